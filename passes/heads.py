"""Exit heads that a model already computes as extra outputs (eenn.onnx, eenn_int8.onnx), taken out as functions.

`InsertExits` attaches heads given as functions of their tap; a model exported with its heads inside has them as
outputs after its own. `heads_from_outputs` splits such a function back into the backbone and one function per
head, so the same passes (InsertExits with a decision, SplitAtExits) build its early-exit form.
"""

from __future__ import annotations

from tvm import relax

from eenn_tvm.passes.cuts import NUM_OUTPUTS_ATTR, backbone, body_bindings, output_fields
from eenn_tvm.passes.rebuild import Substitute


def heads_from_outputs(func: relax.Function, num_outputs: int) -> tuple[relax.Function, list[relax.Function]]:
    """(`func` returning only its first `num_outputs` outputs, the function of each further output's head).

    A head is everything only that output needs; it must read exactly one value of the backbone (its tap),
    which becomes its parameter (named like the tap's binding). Raises ValueError otherwise."""
    func = func.with_attr(NUM_OUTPUTS_ATTR, num_outputs)
    bindings, out = body_bindings(func)
    fields = output_fields(out)
    shared = {b.var for b in backbone(func)} | set(func.params)
    heads = [_head(bindings, shared, field, index) for index, field in enumerate(fields[num_outputs:])]
    kept = [b for b in bindings if b.var in shared]
    return _function(func, kept, fields[:num_outputs]), heads


def _head(bindings: list[relax.Binding], shared: set, output: relax.Expr, index: int) -> relax.Function:
    needed = set(relax.analysis.free_vars(output))
    own = []
    for binding in reversed(bindings):
        if binding.var in needed and binding.var not in shared:
            own.append(binding)
            needed.update(relax.analysis.free_vars(binding.value))
    own.reverse()
    taps = sorted({v for v in needed if v in shared}, key=lambda v: v.name)
    if len(taps) != 1:
        names = ", ".join(v.name for v in taps) or "nothing"
        raise ValueError(f"exit output {index} reads {names} from the backbone: a head must read exactly one tensor")
    tap = taps[0]
    x = relax.Var(tap.name, tap.ty)
    subst = Substitute()
    subst.map(tap, x)
    bb = relax.BlockBuilder()
    with bb.function("head", [x], pure=True):
        with bb.dataflow():
            for binding in own:
                subst.map(binding.var, bb.emit(subst.visit_expr(binding.value), name_hint=binding.var.name))
            result = bb.emit_output(subst.visit_expr(output))
        bb.emit_func_output(result)
    return bb.get()["head"]


def _function(func: relax.Function, bindings: list[relax.Binding], outputs: list[relax.Expr]) -> relax.Function:
    attrs = {k: v for k, v in (func.attrs or {}).items() if k not in (NUM_OUTPUTS_ATTR, "global_symbol")}
    bb = relax.BlockBuilder()
    with bb.function("backbone", list(func.params), attrs=attrs, pure=True):
        with bb.dataflow():
            for binding in bindings:
                bb.emit_normalized(binding)
            result = bb.emit_output(outputs[0] if len(outputs) == 1 else relax.Tuple(outputs))
        bb.emit_func_output(result)
    return bb.get()["backbone"]


def tap_of(head: relax.Function) -> str:
    """The binding name of the backbone value a head reads."""
    return head.params[0].name
