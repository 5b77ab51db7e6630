"""InsertExits and TapPoints: extra outputs at points inside the network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tvm
from tvm import relax

from eenn_tvm.passes.cuts import EXITS_ATTR, NUM_OUTPUTS_ATTR, body_bindings, output_fields, resolve_point
from eenn_tvm.passes.rebuild import emit_inlined, replace_function


@tvm.transform.module_pass(opt_level=0, name="eenn.InsertExits")
class InsertExits:
    """Attach exit heads at points of `main`; it then returns its outputs followed by one output per exit.

    Parameters
    ----------
    heads : Mapping from point (ONNX tensor or binding name) to a `relax.Function` of one argument
        (the activation there) returning the exit's output, or to None for the activation itself.
        Exits are numbered in graph order, whatever the order of the mapping.
    """

    def __init__(self, heads: Mapping[str, relax.Function | None], func_name: str = "main"):
        self.heads = dict(heads)
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        func = mod[self.func_name]
        if exit_count(func):
            raise ValueError("the function already has exits: insert all exits in one InsertExits")
        heads = {resolve_point(func, p): h for p, h in self.heads.items()}
        bindings, out = body_bindings(func)
        order = [b.var.name for b in bindings if b.var.name in heads]

        bb = relax.BlockBuilder()
        with bb.function(self.func_name, list(func.params), attrs=dict(func.attrs or {}), pure=True):
            with bb.dataflow():
                exits = []
                for binding in bindings:
                    bb.emit_normalized(binding)
                    if binding.var.name in heads:
                        exits.append(self._emit_exit(bb, heads[binding.var.name], binding.var, len(exits)))
                gv = bb.emit_output(relax.Tuple(output_fields(out) + exits))
            bb.emit_func_output(gv)
        new = bb.get()[self.func_name]
        new = new.with_attrs({EXITS_ATTR: order, NUM_OUTPUTS_ATTR: len(output_fields(out))})
        return replace_function(mod, self.func_name, new)

    @staticmethod
    def _emit_exit(bb, head: relax.Function | None, tap: relax.Var, index: int) -> relax.Var:
        if head is None:
            return tap
        return emit_inlined(bb, head, [tap], f"exit_{index}")


def TapPoints(points: Sequence[str], func_name: str = "main") -> tvm.transform.Pass:
    """`main` also returns the activation at each point, so one run of the backbone yields every feature."""
    return InsertExits(dict.fromkeys(points), func_name)


def exit_count(func: relax.Function) -> int:
    return len(func.attrs[EXITS_ATTR]) if func.attrs and EXITS_ATTR in func.attrs else 0


@tvm.transform.module_pass(opt_level=0, name="eenn.TapFeatures")
class TapFeatures:
    """`segment` (a function of `SplitAtExits`) also returns, last, the activation at `point` averaged over its
    spatial axes: one value per channel, what a stream's reuse test compares between consecutive windows
    (`augment --stream`). An int8 activation gives the int32 sums of its codes instead (the zero point cancels in
    the test's differences, the scale and the count fold into its threshold; `eenn_tvm.stream.tap_features`).
    The segment must compute the point (up to its cut, included).

    Parameters
    ----------
    point : ONNX tensor or binding name, resolved on `main`.
    """

    def __init__(self, point: str, segment: str = "segment_0"):
        self.point = point
        self.segment = segment

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        name = resolve_point(mod["main"], self.point)
        func = mod[self.segment]
        bindings, out = body_bindings(func)
        if name not in [b.var.name for b in bindings]:
            raise ValueError(f"{self.point} is not computed by {self.segment}")
        bb = relax.BlockBuilder()
        with bb.function(self.segment, list(func.params), attrs=dict(func.attrs or {}), pure=True):
            with bb.dataflow():
                for binding in bindings:
                    bb.emit_normalized(binding)
                    if binding.var.name == name:
                        tap = binding.var
                features = bb.emit(_channel_features(tap))
                gv = bb.emit_output(relax.Tuple(output_fields(out) + [features]))
            bb.emit_func_output(gv)
        return replace_function(mod, self.segment, bb.get()[self.segment])


def _channel_features(tap: relax.Var) -> relax.Expr:
    spatial = list(range(2, len(tap.ty.shape)))
    if tap.ty.dtype == "int8":
        codes = relax.op.astype(tap, "int32")
        return relax.op.sum(codes, axis=spatial) if spatial else codes
    return relax.op.mean(tap, axis=spatial) if spatial else tap
