"""Running split modules: segment by segment, and the early-exit network sample by sample."""

from __future__ import annotations

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.passes import EARLY_EXIT, HANDED_ON, segment_names
from eenn_tvm.targets.host.module import HostModule


class SegmentRunner:
    """Runs `segment_0, segment_1, ...` of a module split by `SplitAtExits`, one after the other.

    Each segment hands its first output (the activation at its cut) to the next; the rest of its
    outputs are its exits.
    """

    def __init__(self, module: HostModule):
        self.module = module
        count = 0
        while module.has(f"segment_{count}"):
            count += 1
        if count == 0:
            raise ValueError("the module has no segments: apply SplitAtExits before building")
        self.segments = segment_names(count)

    def run(self, *inputs: np.ndarray) -> list[list[np.ndarray]]:
        """Outputs of every segment: [activation at cut, exit outputs...] for each, the model's outputs last."""
        per_segment, carry = [], inputs
        for name in self.segments:
            outputs = self.module(name, *carry)
            per_segment.append(outputs)
            carry = outputs[:1]
        return per_segment


class EarlyExitRunner:
    """Runs an early-exit module one sample per call: its `early_exit` function (`ChainExits`) runs the segments
    and returns at the first exit that fires."""

    def __init__(self, module: HostModule):
        if not module.has(EARLY_EXIT):
            raise EennError(
                f"the host module has no {EARLY_EXIT} function (an older eenn-tvm built it): "
                "run augment or compile again"
            )
        self.module = module

    def infer(self, x: np.ndarray) -> tuple[int | None, np.ndarray]:
        """(exit index, the logits there), the end of the network counting as the exit after the last; or
        (None, the activation at the module's last cut) when its segments end before any exit fires: the next
        tier continues from it."""
        index, out = self.module(EARLY_EXIT, x)
        return (None if index == HANDED_ON else index), out
