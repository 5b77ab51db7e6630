"""Measuring workloads on the targets this machine can measure, into a dataset that grows run by run.

- MCU targets: the workload built as firmware for the target's core and run in QEMU with `-icount shift=0`;
  instructions x the core's cycles per instruction / its clock = seconds (deterministic).
- Host targets marked `measured_here`: the workload built by TVM for this CPU and timed (warm-up, then the
  median of repeats).
The rows (`data.Measurement`, with the workload's features) go to a JSON-lines file, one per (workload, target).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eenn_tvm.costmodel.data import Measurement, append_measurement, read_measurements, write_measurements
from eenn_tvm.costmodel.features import segment_features, work_of
from eenn_tvm.costmodel.workloads import Workload
from eenn_tvm.network import Network
from eenn_tvm.outputs import Output
from eenn_tvm.platform import HostTarget, McuTarget, Platform
from eenn_tvm.targets.mcu.build import write_firmware
from eenn_tvm.targets.mcu.cores import core_named
from eenn_tvm.targets.mcu.qemu import run_in_qemu

MIN_TIMED_SECONDS = 0.2
MAX_REPEATS = 50
PROFILE_RAM = 16 << 20  # measure whatever fits the emulated board; budgets are checked when building for real


def measure_all(
    platform: Platform,
    workloads: list[Workload],
    measurements: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Measurement]:
    """Measure every (workload, measurable target) pair not in the file yet; append them; return all rows."""
    rows = read_measurements(measurements)
    by_key = {w.key: w for w in workloads}
    for row in rows:  # features are cheap: recompute them, so rows measured before a feature change still count
        if row.workload in by_key:
            row.features = segment_features(by_key[row.workload].function)
    if rows:
        write_measurements(measurements, rows)
    done = {(r.workload, r.target) for r in rows}
    todo = [(w, t) for w in workloads for t in platform.targets if t.measured_here and (w.key, t.name) not in done]
    for i, (workload, target) in enumerate(todo, 1):
        progress(f"[{i}/{len(todo)}] {workload.name} on {target.name}")
        row = measure(workload, target)
        append_measurement(measurements, row)
        rows.append(row)
    return rows


def measure(workload: Workload, target: McuTarget | HostTarget) -> Measurement:
    features = segment_features(workload.function)
    instructions = None
    if target.kind == "mcu":
        instructions = _instructions_in_qemu(workload, target)
        latency = instructions * target.cycles_per_instruction / target.clock_hz
    else:
        latency = _host_seconds(workload)
    return Measurement(
        workload=workload.key,
        name=workload.name,
        kind=workload.kind,
        target=target.name,
        features=features,
        work=work_of(features),
        latency_s=latency,
        energy_j=latency * target.active_power_w,
        instructions=instructions,
    )


def _instructions_in_qemu(workload: Workload, target: McuTarget) -> int:
    core = core_named(target.core)
    network = Network.from_segment(workload.name, workload.mod)
    with tempfile.TemporaryDirectory(prefix="eenn-profile-") as scratch:
        manifest = write_firmware(
            network, core, Output.of(Path(scratch) / "fw", "firmware"), flash_budget=PROFILE_RAM, ram_budget=PROFILE_RAM
        )
        x = np.random.default_rng(0).standard_normal((1, *workload.input_shape[1:])).astype(np.float32)
        run = run_in_qemu(Path(scratch) / "fw" / manifest.elf, core.board.machine, x, network.classes)
    return int(run.instructions[0])


def _host_seconds(workload: Workload) -> float:
    from eenn_tvm.targets.host import HostModule, build

    x = np.random.default_rng(0).standard_normal(workload.input_shape).astype(np.float32)
    call = HostModule(build(workload.mod)).prepared("segment_0", x)
    for _ in range(3):
        call()
    times, started = [], time.perf_counter()
    while len(times) < MAX_REPEATS and (time.perf_counter() - started < MIN_TIMED_SECONDS or len(times) < 5):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
