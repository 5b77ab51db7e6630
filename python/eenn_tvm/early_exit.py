"""The early-exit network as a Relax module: exit heads with their decision inserted, split into segments."""

from __future__ import annotations

import tvm

from eenn_tvm.exit_functions import exit_function
from eenn_tvm.heads import Head
from eenn_tvm.passes import InsertExits, SplitAtExits, binding_var


def early_exit_module(mod: tvm.IRModule, exits: list[tuple[str, Head, float]], rule: str) -> tvm.IRModule:
    """`segment_i` computes up to exit i and returns (activation, logits, confidence, take); the last
    segment returns the model's output. `exits` holds (point, head, threshold) in graph order."""
    main = mod["main"]
    heads = {
        point: exit_function(head, binding_var(main, point).ty, rule, threshold) for point, head, threshold in exits
    }
    return tvm.transform.Sequential([InsertExits(heads), SplitAtExits()])(mod)
