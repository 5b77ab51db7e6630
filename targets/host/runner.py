"""Running split modules: segment by segment, and the early-exit network sample by sample."""

from __future__ import annotations

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.passes import EARLY_EXIT, HANDED_ON, segment_names
from eenn_tvm.targets.host.module import HostModule, unaliased


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
        self._early_exit = module.function(EARLY_EXIT)
        self.description = "TVM, Relax VM, one call per sample"

    def infer(self, x: np.ndarray) -> tuple[int | None, np.ndarray]:
        """(exit index, the logits there), the end of the network counting as the exit after the last; or
        (None, the activation at the module's last cut) when its segments end before any exit fires: the next
        tier continues from it."""
        # The VM's (index, tensor) unpacked by hand: HostModule's generic conversion costs a third of a
        # small network's call.
        tensor, view = self.module.on_device(0, x)
        index, out = self._early_exit(tensor)
        return (None if index == HANDED_ON else index), unaliased(np.from_dlpack(out), [view])


class BatchRunner:
    """Runs an early-exit module built for a batch of B samples over many samples, for throughput.

    Each segment runs on full batches of samples that reached it; after it, the samples whose exit fired leave
    and the others join the next segment's queue (compaction), so no segment computes a sample that has left.
    Only the last, partial batches are padded. A sample leaves where it would at batch 1. The module may keep
    the activations segments hand each other in its own layout (`build(..., opaque_activations=True)`).
    """

    def __init__(self, module: HostModule, batch: int):
        self.module = module
        self.batch = batch
        self.description = f"TVM, Relax VM, segments in compacted batches of {batch}"
        self.segments = SegmentRunner(module).segments

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exit index, logits at that exit) of every sample of `x`, the end of the network counting as the exit
        after the last."""
        queues: list[list[tuple[int, np.ndarray]]] = [[] for _ in self.segments]
        exits = np.zeros(len(x), np.int64)
        logits: list[np.ndarray | None] = [None] * len(x)
        fed = 0
        while True:
            full = [k for k, queue in enumerate(queues) if len(queue) >= self.batch]
            if full:  # the deepest full queue first: its samples are the nearest to leaving
                stage = full[-1]
            elif fed < len(x):
                queues[0].extend((i, x[i]) for i in range(fed, min(fed + self.batch, len(x))))
                fed = min(fed + self.batch, len(x))
                continue
            elif any(queues):
                stage = max(k for k, queue in enumerate(queues) if queue)
            else:
                return exits, np.stack(logits)
            members, queues[stage] = queues[stage][: self.batch], queues[stage][self.batch :]
            self._run_stage(stage, members, queues, exits, logits)

    def _run_stage(self, stage, members, queues, exits, logits) -> None:
        rows = np.stack([row for _, row in members])
        if len(members) < self.batch:
            rows = np.concatenate([rows, np.zeros((self.batch - len(members), *rows.shape[1:]), rows.dtype)])
        outputs = self.module(self.segments[stage], rows)
        last = stage == len(self.segments) - 1
        take = np.ones(len(members), bool) if last else outputs[3][: len(members)]
        scores = outputs[0] if last else outputs[1]
        for row, (i, _) in enumerate(members):
            if take[row]:
                exits[i], logits[i] = stage, scores[row].copy()
            else:
                queues[stage + 1].append((i, outputs[0][row].copy()))
