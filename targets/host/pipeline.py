"""The Relax pipeline of a host build: channel-last layout, fused kernels, tuned or default schedules, the VM.

`fused_kernels` stops where kernels are fused and not yet scheduled: the functions `eenn-tvm tune` tunes, and the
ones the build then looks up in the database, so the two must come from the same passes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu

from eenn_tvm.targets.host.schedule import DefaultSchedules

# Channels innermost: the axis every kernel vectorises, contiguous in activations and weights alike.
CHANNEL_LAST = {"relax.nn.conv1d": ["NWC", "WIO"], "relax.nn.conv2d": ["NHWC", "HWIO"]}


@tvm.transform.module_pass(opt_level=0, name="eenn.ChannelLast")
class ChannelLast:
    """Convolutions in channel-last layout, function by function; a function TVM's `ConvertLayout` fails on
    (seen: `squeeze` after a 1-D convolution, std::bad_alloc) keeps its layout, which the schedules also handle."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        convert = relax.transform.ConvertLayout(CHANNEL_LAST)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                with contextlib.suppress(tvm.error.InternalError):
                    mod[gv] = convert(tvm.IRModule({gv: func}))[gv]
        return mod


def kernel_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    return [
        *cpu.library_dispatch_passes(target),  # sort, top-k and sampling as library calls
        ChannelLast(),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]


def fused_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """`mod` with every operator legalized and fused into the kernels the build compiles."""
    with target:
        return tvm.transform.Sequential(kernel_passes(target))(mod)


def host_pipeline(target: tvm.target.Target, database: str | Path | None = None) -> tvm.transform.Pass:
    """From a Relax module to VM code: kernels from `database` (a MetaSchedule folder) where it has them, the
    default schedules for the rest."""
    tuned = [relax.transform.MetaScheduleApplyDatabase(str(database))] if database else []

    @tvm.transform.module_pass(opt_level=0, name="eenn.HostPipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            passes = kernel_passes(target) + tuned + [DefaultSchedules()]
            return tvm.transform.Sequential(passes + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))(
                mod
            )

    return pipeline
