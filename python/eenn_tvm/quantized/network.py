"""The int8 early-exit network: a QDQ model with its exit heads as extra outputs (eenn_int8.onnx), made integer
by `QDQToInteger` and cut into segments with the decision compiled into each exit.

The heads' logits are dequantised to float inside the module; softmax, the confidence and the comparison with the
threshold run in float on them, so the decision is the float one applied to the int8 network's logits.
"""

from __future__ import annotations

import math

import tvm

from eenn_tvm.exit_functions import decided_exit
from eenn_tvm.frontend import ImportedModel
from eenn_tvm.passes import InsertExits, QDQToInteger, SplitAtExits
from eenn_tvm.passes.heads import heads_from_outputs, tap_of
from eenn_tvm.passes.rebuild import replace_function


def int8_early_exit_module(model: ImportedModel, thresholds: list[float | None], rule: str) -> tvm.IRModule:
    """Segments of the integer network; `thresholds` holds one per exit output (None: the exit never fires)."""
    mod = QDQToInteger()(model.mod)
    num_outputs = len(model.output_names) - len(thresholds)
    backbone, heads = heads_from_outputs(mod["main"], num_outputs)
    exits = {tap_of(h): decided_exit(h, rule, math.inf if t is None else t) for h, t in zip(heads, thresholds)}
    mod = replace_function(mod, "main", backbone)
    return tvm.transform.Sequential([InsertExits(exits), SplitAtExits()])(mod)
