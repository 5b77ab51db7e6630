"""Default schedules for host kernels: what an untuned build runs, and the seed MetaSchedule starts from.

The host pipeline puts convolutions in channel-last layout (NHWC, weights HWIO), so in nearly every kernel the
innermost output axis is the channel axis, contiguous in the output and in the weights. `ChannelLastReduction`
builds a register tile on it: a few vectors of channels times a few output columns, accumulated in registers over
the whole reduction (kernel window and input channels), with padding and the elementwise epilogue (bias, residual
add, ReLU) computed on the tile before it is stored. It covers convolutions (also depthwise and 1-D), dense layers,
average and global pooling. dlight's CPU rules take softmax-like reductions; `Injective` vectorises the rest.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import get_extent
from tvm.target import Target

from eenn_tvm.targets.host.target import vector_lanes

# Accumulators in a register tile: AVX-512 has 32 vector registers; the rest hold weights and broadcast inputs.
MAX_ACCUMULATORS = 24
# A loop nest with less work than this runs on one core: waking the thread pool costs more than it saves.
PARALLEL_MIN_MACS = 1_000_000
# Below this many loop iterations a reduction runs as plain serial loops (`SmallReduction`).
SMALL_REDUCTION = 4096


def _divisors(n: int, cap: int) -> list[int]:
    return [d for d in range(1, min(n, cap) + 1) if n % d == 0]


def register_tile(columns: int, channel_vectors: int) -> tuple[int, int]:
    """(columns, channel vectors) of the accumulator tile: as many multiply-adds per load as the registers allow.

    A tile of w columns by c vectors does w * c multiply-adds for w broadcast inputs and c weight vectors.
    """
    best = (1, 1)
    for c in _divisors(channel_vectors, MAX_ACCUMULATORS):
        for w in _divisors(columns, MAX_ACCUMULATORS // c):
            if w * c / (w + c) > best[0] * best[1] / sum(best):
                best = (w, c)
    return best


def _vectorize_innermost(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = loops[-1]
    extent = get_extent(sch, inner)
    if not isinstance(extent, int) or extent < 2:
        return
    width = max(_divisors(extent, lanes))
    if width > 1:
        sch.vectorize(sch.split(inner, [None, width])[1])


class ChannelLastReduction(dlight.ScheduleRule):
    """One reduction whose innermost spatial axis is the output's last, with injective producers and consumers."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        try:
            return sch if self.schedule(sch, target, tunable) else None
        except (s_tir.ScheduleError, ValueError):
            return None

    def schedule(self, sch: s_tir.Schedule, target: Target, tunable: bool = False) -> bool:
        """Schedule the function of `sch` in place; False if the rule does not apply to it. `tunable` samples
        the register tile (for MetaSchedule to search) instead of choosing it with `register_tile`."""
        blocks = normalize_prim_func(sch)
        if blocks is None:
            return False
        reductions = [i for i, b in enumerate(blocks) if not b.is_injective()]
        if len(reductions) != 1:
            return False
        main = blocks[reductions[0]]
        kinds = main.dom_kind()
        spatial = len(kinds) - len(kinds.lstrip("S"))
        if spatial == 0 or set(kinds[spatial:]) != {"R"} or not _innermost_is_last_output_axis(sch, main):
            return False
        self._schedule(sch, blocks, reductions[0], spatial, vector_lanes(target), tunable)
        return True

    @staticmethod
    def _schedule(sch, blocks, index, spatial, lanes, tunable) -> None:
        for producer in blocks[:index]:
            # Padding stays a loop nest of its own (a copy of the input with a border of zeros): inlined, its
            # bounds test would sit in the innermost loop and keep LLVM from holding the tile in registers.
            _vectorize_innermost(sch, producer.block_rv, lanes)
        epilogue = blocks[index + 1 :]
        for consumer in epilogue[:-1]:
            sch.compute_inline(consumer.block_rv)
        block = blocks[index].block_rv
        loops = sch.get_loops(block)
        outer, channels, reduce = list(loops[: spatial - 1]), loops[spatial - 1], loops[spatial:]
        extents = [get_extent(sch, loop) for loop in [*outer, channels]]
        if not all(isinstance(e, int) for e in extents):
            raise ValueError("symbolic extents")
        lane_count = max(_divisors(extents[-1], lanes))
        vectors, lane = sch.split(channels, [None, lane_count])
        columns = extents[-2] if outer else 1
        tile_columns, tile_vectors = register_tile(columns, extents[-1] // lane_count)
        vector_outer, vector_inner = _split_tile(sch, vectors, tile_vectors, tunable)
        tile = [vector_inner, lane]
        if outer:
            column_outer, column_inner = _split_tile(sch, outer[-1], tile_columns, tunable)
            outer[-1] = column_outer
            tile.insert(0, column_inner)
        sch.reorder(*outer, vector_outer, *reduce, *tile)
        for loop in tile[:-1]:
            sch.unroll(loop)
        sch.vectorize(lane)
        if epilogue:
            last = epilogue[-1].block_rv
            # Unit loops kept, and lanes split off by a factor every tile size divides: the same instructions
            # whatever tile MetaSchedule samples, as replaying its traces requires.
            sch.reverse_compute_at(last, vector_outer, preserve_unit_loops=True)
            sch.vectorize(sch.split(sch.get_loops(last)[-1], [None, lane_count])[1])
        if outer and _work(sch, block) >= PARALLEL_MIN_MACS:
            sch.parallel(sch.fuse(*sch.get_loops(block)[: max(1, len(outer) - 1)]))
        sch.decompose_reduction(block, reduce[0])


def _split_tile(sch: s_tir.Schedule, loop, inner: int, tunable: bool) -> list:
    """Split `loop` into (outer, inner of `inner` iterations); tunable: the inner extent is sampled instead."""
    if tunable:
        return sch.split(loop, sch.sample_perfect_tile(loop, n=2, max_innermost_factor=MAX_ACCUMULATORS))
    return sch.split(loop, [None, inner])


def _work(sch: s_tir.Schedule, block) -> int:
    total = 1
    for loop in sch.get_loops(block):
        extent = get_extent(sch, loop)
        total *= extent if isinstance(extent, int) else 1
    return total


def _innermost_is_last_output_axis(sch: s_tir.Schedule, info) -> bool:
    """The block's last spatial iterator indexes the last axis of what it writes (so it is contiguous there)."""
    block = sch.get(info.block_rv)
    if len(block.writes) != 1:
        return False
    region = block.writes[0].region
    spatial = [iv.var for iv, it in zip(block.iter_vars, info.iters) if it.kind == "S"]
    last = region[-1].min
    return isinstance(last, tirx.Var) and last.same_as(spatial[-1])


class Injective(dlight.ScheduleRule):
    """Elementwise, transposes, reshapes, padding: one loop nest, the innermost axis vectorised."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if blocks is None or not all(b.is_injective() for b in blocks):
            return None
        try:
            for block in blocks[:-1]:
                sch.compute_inline(block.block_rv)
            _vectorize_innermost(sch, blocks[-1].block_rv, vector_lanes(target))
        except s_tir.ScheduleError:
            return None
        return sch


class SmallReduction(dlight.ScheduleRule):
    """A reduction over a few values (the softmax, maximum or entropy of an exit's logits): serial loops, the
    injective steps vectorised.

    dlight's CPU `Reduction` parallelises the leading spatial axis and computes the reductions under it; at
    batch 1 that axis is the classes, so a 12-class softmax ran its reductions 12 times behind a thread-pool
    launch: 2 us, where the loops take 0.1.
    """

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if blocks is None or all(b.is_injective() for b in blocks):
            return None
        if sum(_work(sch, b.block_rv) for b in blocks) >= SMALL_REDUCTION:
            return None
        for block in blocks:
            if block.is_injective():
                _vectorize_innermost(sch, block.block_rv, vector_lanes(target))
        return sch


def default_rules() -> list[dlight.ScheduleRule]:
    """The rules tried on each kernel, in order; a kernel no rule takes keeps TVM's plain loop nest."""
    return [ChannelLastReduction(), dlight.cpu.GEMV(), SmallReduction(), dlight.cpu.Reduction(), Injective()]


def default_schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    """The schedule of the first rule that takes `func`, or None."""
    rule = default_rule(func, target)
    return None if rule is None else rule.apply(func, target, False)


def default_rule(func: tirx.PrimFunc, target: Target) -> dlight.ScheduleRule | None:
    """The first of `default_rules` that takes `func`, or None."""
    return next((r for r in default_rules() if r.apply(func, target, False) is not None), None)


def DefaultSchedules() -> dlight.ApplyDefaultSchedule:
    """Schedule every kernel not scheduled yet (e.g. by a tuning database) with `default_rules`."""
    return dlight.ApplyDefaultSchedule(*default_rules())
