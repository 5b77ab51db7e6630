"""One static arena for all segments: offsets for every activation, planned over the whole call sequence.

Segments run one after the other, so a tensor only needs its bytes from the call that writes it to the
last call (or driver read) that needs it; tensors whose lifetimes do not overlap share bytes. Offsets are
placed greedily, largest tensor first, at the lowest offset that fits (the planner TFLite Micro uses);
the lower bound is the largest total of tensors alive at one moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from eenn_tvm.targets.mcu.lower import Program, Tensor

ALIGNMENT = 16  # bytes: enough for any vector load the kernels may use on Cortex-M


@dataclass
class MemoryPlan:
    offsets: dict[str, int]  # tensor name -> offset in the arena
    arena_bytes: int
    lower_bound_bytes: int  # the most bytes alive at one moment: no plan can use less


def plan_memory(program: Program, live_until_end: list[Tensor], alignment: int = ALIGNMENT) -> MemoryPlan:
    """`live_until_end`: tensors the caller reads after inference (the result, the hand-over activation);
    every tensor starts at a multiple of `alignment` bytes."""
    lifetimes = _lifetimes(program, live_until_end)
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets = {}
    largest_first = sorted(lifetimes.items(), key=lambda kv: (-_aligned(kv[0].nbytes, alignment), kv[1][0]))
    for tensor, (first, last) in largest_first:
        size = _aligned(tensor.nbytes, alignment)
        offset = _lowest_fit(size, first, last, placed, alignment)
        placed.append((offset, size, first, last))
        offsets[tensor.name] = offset
    arena = max((o + s for o, s, _, _ in placed), default=0)
    return MemoryPlan(offsets, arena, _peak(lifetimes, alignment))


def _lifetimes(program: Program, live_until_end: list[Tensor]) -> dict[Tensor, tuple[int, int]]:
    """(first, last) step of every arena tensor; exit outputs live to the end of their segment, where the
    driver reads them."""
    first: dict[Tensor, int] = {}
    last: dict[Tensor, int] = {}
    model_input = program.segments[0].input
    step = 0
    for segment in program.segments:
        for call in segment.calls:
            for arg in call.args:
                if isinstance(arg, Tensor) and arg is not model_input:
                    first.setdefault(arg, step)
                    last[arg] = step
            step += 1
        for tensor in segment.outputs[1:]:
            last[tensor] = step
        step += 1
    for tensor in live_until_end:
        last[tensor] = step
    return {t: (first[t], last[t]) for t in first}


def _lowest_fit(size: int, first: int, last: int, placed, alignment: int) -> int:
    clashes = sorted((o, s) for o, s, start, end in placed if start <= last and first <= end)
    offset = 0
    for o, s in clashes:
        if offset + size <= o:
            break
        offset = max(offset, _aligned(o + s, alignment))
    return offset


def _peak(lifetimes: dict[Tensor, tuple[int, int]], alignment: int) -> int:
    steps = max((last for _, last in lifetimes.values()), default=-1) + 1
    live = [0] * steps
    for tensor, (first, last) in lifetimes.items():
        for s in range(first, last + 1):
            live[s] += _aligned(tensor.nbytes, alignment)
    return max(live, default=0)


def _aligned(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment
