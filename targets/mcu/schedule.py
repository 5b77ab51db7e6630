"""A schedule for microcontrollers: no intermediate tensors where elementwise work can be fused into a loop nest.

Legalized kernels materialise every stage (the padded input, the convolution before its bias, ...) in
whole temporary buffers, which on a device become workspace RAM as large as the activations. Inlining the
elementwise producers and computing the epilogue of a reduction right after each output element leaves
scalars the compiler keeps in registers.
"""

from __future__ import annotations

import contextlib
import itertools

from tvm import tirx
from tvm.s_tir import Schedule
from tvm.s_tir.schedule import ScheduleError


def schedule_for_mcu(func: tirx.PrimFunc) -> tirx.PrimFunc:
    sch = Schedule(func)
    for block in _blocks(sch):
        _try(sch.compute_inline, block)
    for block in reversed(_blocks(sch)):
        _try(sch.reverse_compute_inline, block)
    blocks = _blocks(sch)
    for producer, consumer in itertools.pairwise(blocks):
        loop = _innermost_spatial_loop(sch, producer)
        if loop is not None:
            _try(sch.reverse_compute_at, consumer, loop)
    return sch.mod["main"]


def _blocks(sch: Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _innermost_spatial_loop(sch: Schedule, block):
    """The loop inside which one output element of `block` is complete (its reduction loops are below)."""
    loops, iters = sch.get_loops(block), sch.get(block).iter_vars
    if not loops or len(loops) != len(iters):
        return None
    spatial = [loop for loop, iv in zip(loops, iters) if iv.iter_type == tirx.IterVar.DataPar]
    return spatial[-1] if spatial else None


def _try(primitive, *args) -> None:
    """Schedule primitives check their own preconditions; a block they refuse stays as it is."""
    with contextlib.suppress(ScheduleError):
        primitive(*args)
