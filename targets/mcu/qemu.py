"""Run a firmware's verify program in `qemu-system-arm`: inputs in, one record per sample out.

`-icount shift=0` makes the emulated core execute one instruction per virtual nanosecond, so the counts
the firmware reads from SysTick are deterministic: the same firmware and inputs give the same numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.textui import progress

# Samples per emulator boot: long runs show progress, and a stuck firmware fails within minutes, not hours.
QEMU_CHUNK = 250


@dataclass
class Run:
    status: np.ndarray
    class_index: np.ndarray
    exit_index: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray  # (samples, classes)
    instructions: np.ndarray  # per sample (0 where the host runs it)
    stack_bytes: int  # deepest stack use seen during all inferences
    live: bytes = b""  # the hand-over tensors of the samples that ended with EENN_CONTINUE, one after the other


def record_dtype(classes: int) -> np.dtype:
    """The layout verify_main.c writes (little-endian, as on every Cortex-M and x86 host)."""
    return np.dtype(
        [
            ("status", "<i4"),
            ("class_index", "<i4"),
            ("exit_index", "<i4"),
            ("confidence", "<f4"),
            ("ticks_low", "<u4"),
            ("ticks_high", "<u4"),
            ("scores", "<f4", (classes,)),
        ]
    )


def qemu_binary() -> str:
    if shutil.which("qemu-system-arm") is None:
        raise EennError("qemu-system-arm is not installed: apt-get install qemu-system-arm (scripts/setup.sh does it)")
    return "qemu-system-arm"


def run_in_qemu(elf: Path, machine: str, inputs: np.ndarray, classes: int, per_boot: int = QEMU_CHUNK) -> Run:
    """`per_boot` samples per emulator boot: a firmware's static state (a stream's) lasts one boot."""
    command = qemu_command(elf, machine)
    starts = range(0, len(inputs), per_boot)
    if len(starts) > 1:
        starts = progress(starts, machine, unit_scale=per_boot, total=len(inputs))
    return joined_runs([_run(command, inputs[s : s + per_boot], classes, timeout=60 + 5 * per_boot) for s in starts])


def qemu_command(elf: Path, machine: str) -> list[str]:
    """The emulator running `elf` with semihosting (files in the working folder) and exact instruction counts."""
    return [
        qemu_binary(),
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(Path(elf).resolve()),
    ]


def joined_runs(runs: list[Run]) -> Run:
    arrays = ("status", "class_index", "exit_index", "confidence", "scores", "instructions")
    return Run(
        *(np.concatenate([getattr(r, name) for r in runs]) for name in arrays),
        max(r.stack_bytes for r in runs),
        b"".join(r.live for r in runs),
    )


def run_on_host(executable: Path, inputs: np.ndarray, classes: int) -> Run:
    return _run([str(Path(executable).resolve())], inputs, classes, timeout=60 + len(inputs))


def _run(command: list[str], inputs: np.ndarray, classes: int, timeout: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="eenn-verify-") as work:
        # float32, or int8 for the verify program of eenn_infer_int8
        np.ascontiguousarray(inputs, dtype=np.int8 if inputs.dtype == np.int8 else "<f4").tofile(
            Path(work) / "inputs.bin"
        )
        try:
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EennError(f"the firmware did not finish within {timeout:.0f} s in {command[0]}") from None
        summary = re.search(r"eenn: samples=(\d+) milli_instructions_per_tick=(\d+) stack_bytes=(\d+)", done.stdout)
        if summary is None or int(summary.group(1)) != len(inputs):
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise EennError(f"the firmware stopped before reporting every sample: {tail[0]}")
        results, dtype = Path(work) / "results.bin", record_dtype(classes)
        if not results.is_file() or results.stat().st_size != len(inputs) * dtype.itemsize:
            raise EennError(
                f"the firmware's results are not {len(inputs)} records of {classes} classes: its firmware.json "
                "does not describe it: run `eenn-tvm build` again"
            )
        records = np.fromfile(results, dtype=dtype)
        live = (Path(work) / "live.bin").read_bytes()
    ticks = records["ticks_low"].astype(np.int64) + (records["ticks_high"].astype(np.int64) << 32)
    instructions = ticks * int(summary.group(2)) // 1000
    return Run(
        records["status"],
        records["class_index"],
        records["exit_index"],
        records["confidence"],
        records["scores"],
        instructions,
        int(summary.group(3)),
        live,
    )
