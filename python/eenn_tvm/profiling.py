"""Measuring workloads on the targets this machine can measure, into a dataset that grows run by run.

- MCU targets: the workload built as firmware for the target's core and run in QEMU with `-icount shift=0`;
  instructions x the core's cycles per instruction / its clock = seconds (deterministic).
- Host targets marked `measured_here`: the workload built by TVM for this CPU and timed (warm-up, then the
  median of repeats).
The dataset is JSON Lines, one row per (workload, target), with the workload's features.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eenn_tvm.costmodel import segment_features, work_of
from eenn_tvm.errors import EennError
from eenn_tvm.firmware import Network, write_firmware
from eenn_tvm.outputs import Output
from eenn_tvm.platform import Platform, Target
from eenn_tvm.targets.mcu.cores import core_named
from eenn_tvm.targets.mcu.qemu import run_in_qemu
from eenn_tvm.workloads import Workload

MIN_TIMED_SECONDS = 0.2
MAX_REPEATS = 50
PROFILE_RAM = 16 << 20  # measure whatever fits the emulated board; budgets are checked when building for real


def read_dataset(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise EennError(f"{path}:{number}: not a JSON line: delete the file or the line") from None
    return rows


def measure_all(
    platform: Platform, workloads: list[Workload], dataset: Path, progress: Callable[[str], None] = lambda _: None
) -> list[dict]:
    """Measure every (workload, measurable target) pair not in the dataset yet; append them; return all rows."""
    rows = read_dataset(dataset)
    by_key = {w.key: w for w in workloads}
    for row in rows:  # features are cheap: recompute them, so rows measured before a feature change still count
        if row["workload"] in by_key:
            row["features"] = segment_features(by_key[row["workload"]].function)
    if rows:
        _rewrite(dataset, rows)
    done = {(r["workload"], r["target"]) for r in rows}
    todo = [(w, t) for w in workloads for t in platform.targets if t.measurable and (w.key, t.name) not in done]
    dataset.parent.mkdir(parents=True, exist_ok=True)
    for i, (workload, target) in enumerate(todo, 1):
        progress(f"[{i}/{len(todo)}] {workload.name} on {target.name}")
        row = measure(workload, target)
        with dataset.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def _rewrite(dataset: Path, rows: list[dict]) -> None:
    partial = dataset.with_name(f".{dataset.name}.partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
    partial.replace(dataset)


def measure(workload: Workload, target: Target) -> dict:
    features = segment_features(workload.function)
    extra = {}
    if target.kind == "mcu":
        instructions = _instructions_in_qemu(workload, target)
        latency = instructions * target.cycles_per_instruction / target.clock_hz
        extra["instructions"] = instructions
    else:
        latency = _host_seconds(workload)
    return {
        "workload": workload.key,
        "name": workload.name,
        "kind": workload.kind,
        "target": target.name,
        "features": features,
        "work": work_of(features),
        "latency_s": latency,
        "energy_j": latency * target.active_power_w,
        **extra,
    }


def _instructions_in_qemu(workload: Workload, target: Target) -> int:
    core = core_named(target.core)
    out_ty = workload.function.ret_ty.fields[0]
    network = Network(
        workload.name,
        "model",
        workload.mod,
        ["segment_0"],
        "x",
        list(workload.input_shape),
        math.prod(int(d) for d in out_ty.shape),
        False,
        [],
        None,
        None,
    )
    with tempfile.TemporaryDirectory(prefix="eenn-profile-") as scratch:
        manifest = write_firmware(
            network, core, Output.of(Path(scratch) / "fw", "firmware"), flash_budget=PROFILE_RAM, ram_budget=PROFILE_RAM
        )
        x = np.random.default_rng(0).standard_normal((1, *workload.input_shape[1:])).astype(np.float32)
        run = run_in_qemu(Path(scratch) / "fw" / manifest["elf"], core.board.machine, x, network.classes)
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
