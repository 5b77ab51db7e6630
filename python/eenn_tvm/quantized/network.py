"""The int8 early-exit network: a QDQ model with its exit heads as extra outputs (eenn_int8.onnx), made integer
by `QDQToInteger` and cut into segments with the decision compiled into each exit.

The heads' logits are dequantised to float inside the module; softmax, the confidence and the comparison with the
threshold run in float on them, so the decision is the float one applied to the int8 network's logits.
"""

from __future__ import annotations

import tvm
from tvm import relax

from eenn_tvm.exit_functions import decided_exit
from eenn_tvm.frontend import ImportedModel
from eenn_tvm.passes import InsertExits, QDQToInteger, SplitAtExits
from eenn_tvm.passes.heads import heads_from_outputs, tap_of
from eenn_tvm.passes.rebuild import replace_function
from eenn_tvm.quantized.ops import composite_name


def int8_early_exit_module(model: ImportedModel, thresholds: list[float], rule: str) -> tvm.IRModule:
    """Segments of the integer network; `thresholds` holds one per exit output (infinity: the exit never fires)."""
    mod = QDQToInteger()(model.mod)
    num_outputs = len(model.output_names) - len(thresholds)
    backbone, heads = heads_from_outputs(mod["main"], num_outputs)
    exits = {tap_of(h): decided_exit(h, rule, t) for h, t in zip(heads, thresholds)}
    mod = replace_function(mod, "main", backbone)
    return tvm.transform.Sequential([InsertExits(exits), SplitAtExits()])(mod)


def op_counts(model: ImportedModel) -> dict[str, dict[str, int]]:
    """How many ops of each kind the int8 network computes in integers and how many stay in float
    (the quantize of the input and the dequantize of the outputs, the boundaries, are not counted)."""
    mod = QDQToInteger()(model.mod)
    counts: dict[str, dict[str, int]] = {"integer": {}, "float": {}}
    for binding in mod["main"].body.blocks[0].bindings:
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(binding.var.ty, relax.TensorType):
            continue
        if isinstance(call.op, tvm.ir.GlobalVar):
            name = composite_name(mod[call.op]) or call.op.name_hint
        elif call.op.name in ("relax.quantize", "relax.dequantize"):
            continue
        else:
            name = call.op.name.removeprefix("relax.")
        kind = "integer" if str(binding.var.ty.dtype).startswith(("int", "uint")) else "float"
        counts[kind][name] = counts[kind].get(name, 0) + 1
    return counts


def describe_ops(counts: dict[str, dict[str, int]]) -> str:
    """`op_counts` in one line: "integer ops: add 3, conv2d 9; float ops: none"."""

    def listed(ops: dict[str, int]) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(ops.items())) or "none"

    return f"integer ops: {listed(counts['integer'])}; float ops: {listed(counts['float'])}"
