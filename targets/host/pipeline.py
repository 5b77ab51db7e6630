"""The Relax pipeline of a host build: channel-last layout, fused kernels, tuned or default schedules, the VM.

`fused_kernels` stops where kernels are fused and not yet scheduled: the functions `eenn-tvm tune` tunes, and the
ones the build then looks up in the database, so the two must come from the same passes.
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu

from eenn_tvm.targets.fusion import fusion_passes
from eenn_tvm.targets.host.layout import ChannelLast, ChannelLastAcrossCalls
from eenn_tvm.targets.host.schedule import DefaultSchedules


def kernel_passes(target: tvm.target.Target, opaque_activations: bool = False) -> list[tvm.transform.Pass]:
    return [
        *cpu.library_dispatch_passes(target),  # sort, top-k and sampling as library calls
        ChannelLast(),
        ChannelLastAcrossCalls(between_segments=opaque_activations),
        relax.transform.DeadCodeElimination(),  # the transposes ChannelLastAcrossCalls left unused
        *fusion_passes(),
    ]


def fused_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """`mod` with every operator legalized and fused into the kernels the build compiles."""
    with target:
        return tvm.transform.Sequential(kernel_passes(target))(mod)


def scheduled_kernel_passes(
    target: tvm.target.Target, database: str | Path | None = None, opaque_activations: bool = False
) -> list[tvm.transform.Pass]:
    """`kernel_passes`, then every kernel scheduled: from `database` (a MetaSchedule folder) where it has it, the
    default schedules for the rest. Run them under `target`."""
    tuned = [relax.transform.MetaScheduleApplyDatabase(str(database))] if database else []
    return kernel_passes(target, opaque_activations) + tuned + [DefaultSchedules()]


def host_pipeline(
    target: tvm.target.Target, database: str | Path | None = None, opaque_activations: bool = False
) -> tvm.transform.Pass:
    """From a Relax module to VM code, with `scheduled_kernel_passes`. `opaque_activations`: see `build`."""

    @tvm.transform.module_pass(opt_level=0, name="eenn.HostPipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            passes = scheduled_kernel_passes(target, database, opaque_activations)
            return tvm.transform.Sequential(passes + cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))(
                mod
            )

    return pipeline
