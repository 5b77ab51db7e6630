"""SplitAtExits: one function per segment, so each can be built and placed on its own target."""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import relax

from eenn_tvm.passes.cuts import (
    backbone,
    body_bindings,
    check_cuts,
    exit_points_of,
    num_outputs_of,
    output_fields,
    resolve_point,
)
from eenn_tvm.passes.rebuild import Substitute, replace_function

SEGMENT_PREFIX = "segment_"


def segment_names(count: int) -> list[str]:
    return [f"{SEGMENT_PREFIX}{i}" for i in range(count)]


def segment_index(name: str) -> int | None:
    """i for `segment_i`, None for any other function name."""
    suffix = name.removeprefix(SEGMENT_PREFIX)
    return int(suffix) if suffix != name and suffix.isdigit() else None


def segments_only(mod: tvm.IRModule, names: Sequence[str]) -> tvm.IRModule:
    """The named segment functions without the other Relax functions, but with every TIR function: the front end
    emits some ONNX ops as TIR (Clip, hence ReLU6, becomes `maximum` and `minimum`) that segments call."""
    return tvm.IRModule(
        {gv: f for gv, f in mod.functions.items() if gv.name_hint in names or not isinstance(f, relax.Function)}
    )


@tvm.transform.module_pass(opt_level=0, name="eenn.SplitAtExits")
class SplitAtExits:
    """Add `segment_0 ... segment_K` for the K cuts of `main`: segment i maps the activation at cut i-1
    (the model input for i = 0) to the tuple (activation at cut i, outputs of the exits at cut i); the last
    segment returns the model's outputs. Chained, they compute what `main` computes.

    Parameters
    ----------
    points : the cuts (ONNX tensor or binding names); by default the exits `InsertExits` attached.
        A point where more than one value is live is rejected with "cut at X is crossed by Y".
    """

    def __init__(self, points: Sequence[str] | None = None, func_name: str = "main"):
        self.points = None if points is None else list(points)
        self.func_name = func_name

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        func = mod[self.func_name]
        cuts = exit_points_of(func) if self.points is None else [resolve_point(func, p) for p in self.points]
        check_cuts(func, cuts)
        position = {b.var.name: i for i, b in enumerate(backbone(func))}
        cuts = sorted(set(cuts), key=position.__getitem__)
        owner = _segment_of_each_binding(func, cuts)
        bindings, out = body_bindings(func)
        fields = output_fields(out)
        for index in range(len(cuts) + 1):
            seg = self._segment(func, bindings, fields, owner, cuts, index)
            mod = replace_function(mod, segment_names(len(cuts) + 1)[index], seg)
        return mod

    def _segment(self, func, bindings, fields, owner, cuts, index) -> relax.Function:
        # Fresh parameters: a Var may be bound in one function only (segment_0 takes what `main` takes).
        inputs = list(func.params) if index == 0 else [next(b.var for b in bindings if b.var.name == cuts[index - 1])]
        params = [relax.Var(v.name, v.ty) for v in inputs]
        subst = Substitute()
        for old, new in zip(inputs, params):
            subst.map(old, new)
        last = index == len(cuts)
        results = (
            fields[: num_outputs_of(func)] if last else [next(b.var for b in bindings if b.var.name == cuts[index])]
        )
        results = results + [f for f in fields[num_outputs_of(func) :] if _owner_of_expr(f, owner) == index]

        bb = relax.BlockBuilder()
        with bb.function("segment", params, pure=True):
            with bb.dataflow():
                for binding in bindings:
                    if owner[binding.var.name] == index:
                        subst.map(binding.var, bb.emit(subst.visit_expr(binding.value), name_hint=binding.var.name))
                gv = bb.emit_output(relax.Tuple([subst.visit_expr(r) for r in results]))
            bb.emit_func_output(gv)
        return bb.get()["segment"]


def _segment_of_each_binding(func: relax.Function, cuts: list[str]) -> dict[str, int]:
    """Backbone bindings belong to the segment their position falls in; the rest (exit heads) to the
    segment that computes their last input."""
    owner: dict[str, int] = {}
    segment = 0
    for binding in backbone(func):
        owner[binding.var.name] = segment
        if segment < len(cuts) and binding.var.name == cuts[segment]:
            segment += 1
    for binding in body_bindings(func)[0]:
        if binding.var.name not in owner:
            owner[binding.var.name] = _owner_of_expr(binding.value, owner)
    return owner


def _owner_of_expr(expr: relax.Expr, owner: dict[str, int]) -> int:
    return max((owner.get(v.name, 0) for v in relax.analysis.free_vars(expr)), default=0)
