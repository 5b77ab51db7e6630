"""AnnotatePartition: each segment function carries the target the placement gave it."""

from __future__ import annotations

from collections.abc import Mapping

import tvm

TARGET_ATTR = "eenn.target"


@tvm.transform.module_pass(opt_level=0, name="eenn.AnnotatePartition")
class AnnotatePartition:
    """Set the `eenn.target` attribute of every function named in `placement` (segment name -> target name).

    Backends then build each target's functions (`functions_on`); a segment the placement does not name is
    an error, so no segment is silently left out of the deployment.
    """

    def __init__(self, placement: Mapping[str, str]):
        self.placement = dict(placement)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        names = {gv.name_hint for gv in mod.functions}
        missing = sorted(set(self.placement) - names)
        if missing:
            raise ValueError(f"the placement names functions the module does not have: {', '.join(missing)}")
        for gv, func in list(mod.functions.items()):
            if gv.name_hint in self.placement:
                mod[gv] = func.with_attr(TARGET_ATTR, self.placement[gv.name_hint])
        return mod


def functions_on(mod: tvm.IRModule, target: str) -> list[str]:
    """The functions AnnotatePartition put on `target`, in order (segment_2 before segment_10)."""
    names = [
        gv.name_hint
        for gv, f in mod.functions.items()
        if f.attrs is not None and TARGET_ATTR in f.attrs and str(f.attrs[TARGET_ATTR]) == target
    ]
    return sorted(names, key=lambda n: (len(n), n))
