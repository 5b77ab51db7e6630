"""`verify`: the firmware on an emulated Cortex-M against the host, sample by sample.

The reference is onnxruntime on the ONNX model (a plain model) or the early-exit network's TVM host module
(an `augment` output): the firmware must pick the same class at the same exit, with outputs within 1e-4.
With `int8_input`, the firmware's int8 entry point (eenn_infer_int8) runs on the inputs quantised here with the
constants of its header instead, and must give the same results.
An int8 firmware is compared with its integer host module (QDQToInteger on the host): the same exit and
equal outputs (the dequantised logits bit for bit, a float softmax after them to 1e-6); and with onnxruntime on
the QDQ model (which computes in float between quantize and dequantize, so it may differ by a rounding step):
how often class and exit agree.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eenn_tvm import onnx_runtime
from eenn_tvm.data import Dataset, load_npz
from eenn_tvm.errors import EennError
from eenn_tvm.plan import macs_by_exit
from eenn_tvm.quantized.reference import quantize
from eenn_tvm.targets.mcu.manifest import FirmwareManifest
from eenn_tvm.targets.mcu.project import compile_project
from eenn_tvm.targets.mcu.qemu import Run, joined_runs, run_in_qemu, run_on_host

TOLERANCE = 1e-4
# int8: the integers are equal on host and device, and so are the dequantised logits; a float op after them (a
# model's own softmax) is compiled by two compilers and may differ in its last bits
INT8_TOLERANCE = 1e-6
ONNXRUNTIME_AGREEMENT = 0.995  # int8: the least share of samples with onnxruntime's class and exit


@dataclass
class Verification:
    samples: int
    class_mismatches: int
    exit_mismatches: int
    max_abs_error: float
    within_tolerance: bool
    tolerance: float  # of the outputs against the host
    accuracy: float  # of the firmware, against the labels
    instructions_mean: float
    instructions_per_exit: list[dict]  # exit, samples, mean instructions, plan MACs to get there
    flash_bytes: int
    ram_bytes: int
    stack_bytes_used: int
    arena_bytes: int
    ram_lower_bound_bytes: int
    onnxruntime_agreement: float | None  # int8: the share of samples with onnxruntime's class and exit
    plan_vs_measured: dict | None  # early-exit networks: the cost relative to a full pass, predicted and measured
    target: str  # the core
    machine: str  # the QEMU board, or "host" for the sanitizer build on this computer
    entry: str  # the entry point run: eenn_infer (float input), or eenn_infer_int8 (input quantised here)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def matches(self) -> bool:
        """Same class, exit and outputs as the host (and, int8, onnxruntime's class and exit often enough)."""
        agrees = self.onnxruntime_agreement is None or self.onnxruntime_agreement >= ONNXRUNTIME_AGREEMENT
        return self.within_tolerance and not self.class_mismatches and agrees


def verify(
    folder: str | Path,
    data_path: str | Path,
    n: int = 100,
    on: str = "qemu",
    log: Callable[[str], None] = lambda _: None,
    int8_input: bool = False,
) -> Verification:
    """`on="host"` compiles the same C for this computer, with AddressSanitizer and UndefinedBehaviorSanitizer
    (nothing is counted there: instruction figures are 0)."""
    folder = Path(folder)
    manifest = FirmwareManifest.load(folder)
    if int8_input and manifest.int8_input is None:
        raise EennError(
            f"{folder}: has no int8 entry point (eenn_infer_int8): only an int8 build with the kernel library has one "
            "(`eenn-tvm build ... --dtype int8`, not --kernels llvm or c)"
        )
    reference = manifest.artifact(folder, "reference")
    elf = manifest.named_file(folder, manifest.int8_input.elf) if int8_input else manifest.artifact(folder, "elf")
    qdq_model = manifest.named_file(folder, manifest.int8.onnx) if manifest.int8 else None
    data = load_npz(data_path, tuple(manifest.input_shape[1:]), manifest.classes)
    data = Dataset(data.x[:n], data.y[:n])
    log(f"running {len(data)} samples on {manifest.machine if on == 'qemu' else 'this host'}")
    device = _run(folder, elf, manifest, data, on, int8_input)
    exits, scores = _reference(reference, manifest, data)
    final = len(manifest.exits)
    same_exit = device.exit_index == exits
    errors = np.abs(device.scores - scores).max(axis=1)
    max_error = float(errors[same_exit].max()) if same_exit.any() else float("inf")
    tolerance = INT8_TOLERANCE if manifest.dtype == "int8" else TOLERANCE
    sizes, memory = manifest.sizes, manifest.memory
    return Verification(
        samples=len(data),
        class_mismatches=int((device.class_index != scores.argmax(1)).sum()),
        exit_mismatches=int((~same_exit).sum()),
        max_abs_error=max_error,
        within_tolerance=bool(same_exit.all() and max_error <= tolerance),
        tolerance=tolerance,
        accuracy=float((device.class_index == data.y).mean()),
        instructions_mean=float(device.instructions.mean()),
        instructions_per_exit=_per_exit(device, manifest, final),
        flash_bytes=sizes.flash,
        ram_bytes=sizes.ram,
        stack_bytes_used=device.stack_bytes,
        arena_bytes=memory.arena_bytes,
        ram_lower_bound_bytes=memory.lower_bound_bytes + memory.workspace_bytes,
        onnxruntime_agreement=_onnxruntime_agreement(qdq_model, manifest, data, device),
        plan_vs_measured=_plan_vs_measured(device, manifest, final),
        target=manifest.core,
        machine=manifest.machine if on == "qemu" else "host",
        entry="eenn_infer_int8" if int8_input else "eenn_infer",
    )


@dataclass
class StreamVerification:
    """The firmware's stream rule (eenn_infer_stream) against the host's, window by window: the static host
    module's (float32), or the rule in numpy on the integer host module's outputs (int8)."""

    samples: int
    streams: int
    decision_mismatches: int  # windows whose exit (or reuse) or class differs from the host's
    reused: int  # windows that took the last answer, on the device
    max_abs_error: float  # of the scores, on windows with the host's decision
    accuracy: float
    instructions_mean: float
    instructions_reused_mean: float | None  # of the reused windows: the backbone up to the tap and the test
    target: str
    machine: str
    reference: str  # the host's side
    entry: str = "eenn_infer_stream"

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def matches(self) -> bool:
        return self.decision_mismatches == 0


def verify_stream(
    folder: str | Path,
    data_path: str | Path,
    n: int = 500,
    on: str = "qemu",
    log: Callable[[str], None] = lambda _: None,
) -> StreamVerification:
    """The first `n` windows of stream data (in stream order), each stream run from a reset: one emulator boot per
    stream on the device; on the host, `reset_stream` (float32) or a new state of the numpy rule (int8)."""
    from eenn_tvm.targets.host.static import REUSED, StaticEarlyExit

    folder = Path(folder)
    manifest = FirmwareManifest.load(folder)
    if manifest.stream_rule_elf is None:
        raise EennError(
            f"{folder}: has no stream rule (eenn_infer_stream): build the firmware from an `eenn-tvm augment "
            "--stream` output (for --dtype int8, quantised with its stream data)"
        )
    data = load_npz(data_path, tuple(manifest.input_shape[1:]), manifest.classes)
    if not data.is_stream:
        raise EennError(f"{data_path}: is not stream data: verify --stream needs arrays stream and order beside x, y")
    data = data.head(n)
    starts = np.flatnonzero(np.r_[True, data.stream[1:] != data.stream[:-1]])
    streams = np.split(np.arange(len(data)), starts[1:])
    elf = manifest.artifact(folder, "stream_rule_elf")
    where = manifest.machine if on == "qemu" else "this host"
    log(f"running {len(data)} windows of {len(streams)} stream(s) on {where}")
    device = _run_streams(folder, elf, manifest, [data.x[s] for s in streams], on)
    reference = manifest.artifact(folder, "stream_reference")
    if manifest.dtype == "int8":
        exits, scores = _int8_stream_reference(reference, manifest, data)
    else:
        exits, scores = StaticEarlyExit(reference).run_streams(data.x, data.stream)
    same = (device.exit_index == exits) & (device.class_index == scores.argmax(1))
    reused = device.exit_index == REUSED
    return StreamVerification(
        samples=len(data),
        streams=len(streams),
        decision_mismatches=int((~same).sum()),
        reused=int(reused.sum()),
        max_abs_error=float(np.abs(device.scores - scores)[same].max()) if same.any() else float("inf"),
        accuracy=float((device.class_index == data.y).mean()),
        instructions_mean=float(device.instructions.mean()),
        instructions_reused_mean=float(device.instructions[reused].mean()) if reused.any() else None,
        target=manifest.core,
        machine=manifest.machine if on == "qemu" else "host",
        reference="the integer host module, the rule in numpy"
        if manifest.dtype == "int8"
        else "the static host module",
    )


def _int8_stream_reference(path: Path, manifest: FirmwareManifest, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(exit index or REUSED, scores) per window: every segment of the integer host module on every window, its tap's
    channel sums from the first, and the firmware's rule applied to them in numpy (`eenn_tvm.stream.decide`)."""
    from eenn_tvm.stream import decide
    from eenn_tvm.stream_stage import Tap, rule_of, stream_windows
    from eenn_tvm.targets.host import HostModule, SegmentRunner

    runner = SegmentRunner(HostModule.load(path))
    runs = [runner.run(data.x[i : i + 1]) for i in range(len(data))]
    exits = len(manifest.exits)
    scores = [np.concatenate([r[j][1] for r in runs]).reshape(len(data), -1) for j in range(exits)]
    ends = np.concatenate([r[-1][0] for r in runs]).reshape(len(data), -1)
    tap = np.concatenate([r[0][4] for r in runs]).astype(np.int64)
    windows = stream_windows(
        manifest.int8.decision,
        _macs_through(manifest),
        data.stream,
        data.y,
        ends.argmax(1),
        scores,
        [tap],
        [Tap(manifest.stream)],
    )
    slots = decide(windows, [rule_of(manifest.stream)]).slot[0]
    answered = np.stack([*scores, ends])[np.maximum(slots, 0), np.arange(len(data))]
    for i in np.flatnonzero(slots < 0):  # a reused window gives the scores of the last answer, its stream's
        answered[i] = answered[i - 1]
    return slots, answered


def _run_streams(folder: Path, elf: Path, manifest: FirmwareManifest, streams: list[np.ndarray], on: str) -> Run:
    """Each stream's windows in one run of the program: its state is the firmware's static memory."""
    if on == "qemu":
        runs = [run_in_qemu(elf, manifest.machine, x, manifest.classes, per_boot=len(x)) for x in streams]
        return joined_runs(runs)
    with tempfile.TemporaryDirectory(prefix="eenn-host-build-") as build:
        compile_project(folder, Path(build), cross=False, sanitize=True)
        return joined_runs([run_on_host(Path(build) / Path(elf.name).stem, x, manifest.classes) for x in streams])


def _run(folder: Path, elf: Path, manifest: FirmwareManifest, data: Dataset, on: str, int8_input: bool) -> Run:
    inputs = data.x
    if int8_input:  # as a user's int8 pipeline would, from the header's EENN_INPUT_SCALE and EENN_INPUT_ZERO_POINT
        inputs = quantize(data.x, manifest.int8_input.scale, manifest.int8_input.zero_point)
    if on == "qemu":
        return run_in_qemu(elf, manifest.machine, inputs, manifest.classes)
    with tempfile.TemporaryDirectory(prefix="eenn-host-build-") as build:
        compile_project(folder, Path(build), cross=False, sanitize=True)
        return run_on_host(Path(build) / Path(elf.name).stem, inputs, manifest.classes)


def _reference(path: Path, manifest: FirmwareManifest, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(exit index, outputs at that exit) per sample on the host: a TVM host module (an early-exit network's, or
    an int8 network's integer one) or onnxruntime (a plain float model)."""
    if manifest.kind == "eenn" or manifest.dtype == "int8":
        from eenn_tvm.targets.host import EarlyExitRunner, HostModule

        runner = EarlyExitRunner(HostModule.load(path))
        results = [runner.infer(data.x[i : i + 1]) for i in range(len(data))]
        return np.array([e for e, _ in results]), np.stack([s.reshape(-1) for _, s in results])
    outputs = [sample[0].reshape(-1) for sample in onnx_runtime.run_each(onnx_runtime.session(path), data.x)]
    return np.zeros(len(data), np.int64), np.stack(outputs)


def _onnxruntime_agreement(
    qdq_model: Path | None, manifest: FirmwareManifest, data: Dataset, device: Run
) -> float | None:
    if qdq_model is None:
        return None
    from eenn_tvm.inference import apply_thresholds

    outputs = onnx_runtime.run_each(onnx_runtime.session(qdq_model), data.x)
    exits, classes = apply_thresholds(manifest.int8.thresholds, manifest.int8.decision, outputs)
    return float(((exits == device.exit_index) & (classes == device.class_index)).mean())


def _macs_through(manifest: FirmwareManifest) -> list[int] | None:
    """MACs a sample spends when it leaves at each exit, then at the end (None: a plain model, not counted)."""
    return None if manifest.total_macs is None else macs_by_exit(manifest.exits, manifest.total_macs)


def _per_exit(device: Run, manifest: FirmwareManifest, final: int) -> list[dict]:
    macs = _macs_through(manifest)
    rows = []
    for index in range(final + 1):
        taken = device.exit_index == index
        if taken.any():
            rows.append(
                {
                    "exit": "end" if index == final else index,
                    "samples": int(taken.sum()),
                    "instructions_mean": float(device.instructions[taken].mean()),
                    "plan_macs": None if macs is None else macs[index],
                }
            )
    return rows


def _plan_vs_measured(device: Run, manifest: FirmwareManifest, final: int) -> dict | None:
    """Mean cost per inference relative to a pass through every segment: predicted from the plan's MACs for
    the exits these samples took, measured in instructions (a full pass = the samples that reached the end)."""
    full = device.exit_index == final
    if manifest.kind != "eenn" or not full.any() or not device.instructions.any():
        return None
    macs = _macs_through(manifest)
    predicted = np.mean([macs[int(e)] for e in device.exit_index]) / macs[final]
    measured = device.instructions.mean() / device.instructions[full].mean()
    return {
        "predicted_fraction": float(predicted),
        "measured_fraction": float(measured),
        "exit_rate": float(1 - full.mean()),
    }
