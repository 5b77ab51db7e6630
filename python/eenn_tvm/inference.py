"""Run a built early-exit network on labelled data, one sample at a time, and measure what it saves.

Two engines: `tvm` runs the host module `augment` built (exit logic compiled in); `onnxruntime` runs
eenn.onnx and applies the plan's rule and thresholds in numpy, so the figures can be checked
independently. Beside them, on the same data: the original model (the first output of eenn.onnx) and
the Shallow-Deep-Networks style baseline (baseline.onnx with its one threshold), both in onnxruntime.
With dtype int8, also the int8 network (`eenn-tvm quantize`) both ways: eenn_int8.onnx with its thresholds in
numpy, and the integer host module; and how often the two agree.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eenn_tvm import onnx_runtime, stream_stage
from eenn_tvm.data import Dataset
from eenn_tvm.decision import confidence
from eenn_tvm.errors import EennError
from eenn_tvm.plan import Plan, PlannedExit, macs_by_exit
from eenn_tvm.textui import progress


@dataclass
class RunResult:
    engine: str
    samples: int
    baseline_accuracy: float  # the original model
    accuracy: float
    accuracy_drop: float
    total_macs: int
    mean_macs: float
    mac_reduction: float  # 1 - mean MACs per inference / the original model's MACs
    exit_histogram: list[int]  # samples leaving at each exit, then at the end
    sdn_baseline: dict | None  # the Shallow-Deep-Networks style baseline on the same data (None: infeasible)
    seconds: float
    int8: dict | None = None  # with dtype int8: the int8 network in onnxruntime and TVM, and how often they agree
    batch: int = 1  # samples per call of the engine
    inference_seconds: float = 0.0  # the engine's inference over all samples (no build, no reference runs)
    samples_per_second: float = 0.0
    stream: dict | None = None  # stream data and a plan with stream decisions: the windows run in order with them
    runner: str = ""  # what ran the network: the static host module, the VM module, or onnxruntime

    def to_json(self) -> dict:
        return asdict(self)


def run(
    folder: str | Path,
    plan: Plan,
    data: Dataset,
    engine: str = "tvm",
    dtype: str = "float32",
    batch: int = 1,
    database: str | Path | None = None,
) -> RunResult:
    """`batch` > 1 (tvm only) builds the network for batches of that many samples and compacts them as samples
    leave; `database` (tvm only) rebuilds it with the kernels of a tuning database instead of the saved module."""
    folder = Path(folder)
    start = time.perf_counter()
    if dtype == "int8" and plan.int8 is None:
        raise EennError(f"{folder} has no int8 network: run `eenn-tvm quantize {folder} --data DATA.npz` first")
    started = time.perf_counter()
    eenn_outputs = _onnx_outputs(plan.artifact(folder, "eenn_onnx"), data)
    inference_seconds = time.perf_counter() - started
    baseline_pred = np.array([o[0].argmax() for o in eenn_outputs])
    runner = f"onnxruntime ({plan.artifacts.eenn_onnx}, thresholds in numpy)"
    if engine == "tvm":
        tvm_runner = _tvm_runner(folder, plan, batch, database)
        exit_index, pred, inference_seconds = _run_tvm(tvm_runner, data)
        runner = tvm_runner.description
    elif engine == "onnxruntime":
        exit_index, pred = apply_thresholds(_thresholds(plan.exits), plan.decision, eenn_outputs)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    sdn = None
    if plan.baseline.feasible:
        sdn_outputs = _onnx_outputs(plan.artifact(folder, "baseline_onnx"), data)
        sdn_index = apply_thresholds(_thresholds(plan.baseline.exits), plan.decision, sdn_outputs)
        sdn = _figures(plan.baseline.exits, plan, data, *sdn_index)
    ours = _figures(plan.exits, plan, data, exit_index, pred)
    baseline_accuracy = float((baseline_pred == data.y).mean())
    return RunResult(
        engine=engine,
        samples=len(data),
        baseline_accuracy=baseline_accuracy,
        accuracy_drop=baseline_accuracy - ours["accuracy"],
        total_macs=plan.model.total_macs,
        **ours,
        sdn_baseline=sdn,
        int8=_run_int8(folder, plan, data) if dtype == "int8" else None,
        seconds=time.perf_counter() - start,
        batch=batch,
        inference_seconds=inference_seconds,
        samples_per_second=len(data) / inference_seconds,
        stream=_run_stream(folder, plan, data, eenn_outputs) if plan.stream and data.is_stream else None,
        runner=runner,
    )


def _run_stream(folder: Path, plan: Plan, data: Dataset, eenn_outputs: list[list[np.ndarray]]) -> dict:
    """The plan's stream decisions (`stream_stage.run`) and how often the compiled rule takes them."""
    figures = stream_stage.run(folder, plan, data, eenn_outputs)
    figures["static_host_agreement"] = _compiled_agreement(folder, plan, data, figures)
    return figures


def _compiled_agreement(folder: Path, plan: Plan, data: Dataset, figures: dict) -> float | None:
    """The share of windows on which the static host module's compiled rule (eenn_infer_stream, each stream from
    a reset) takes the numpy rule's decision: exit or reuse, and class. None without a static host module that has
    the rule (an older eenn-tvm's)."""
    if plan.artifacts.static_host_module is None:
        return None
    from eenn_tvm.targets.host.static import StaticEarlyExit

    static = StaticEarlyExit(plan.artifact(folder, "static_host_module"))
    if not static.decides_streams:
        return None
    slots, scores = static.run_streams(data.x, data.stream)
    return float(((slots == figures["slots"]) & (scores.argmax(1) == figures["answers"])).mean())


def _run_int8(folder: Path, plan: Plan, data: Dataset) -> dict:
    """The int8 network in onnxruntime (eenn_int8.onnx, thresholds applied in numpy) and in TVM (the integer host
    module), and the share of samples on which both give the same class at the same exit; on stream data, its
    stream rule's figures (onnxruntime, the rule in numpy)."""
    outputs = _onnx_outputs(plan.artifact(folder, "eenn_int8_onnx"), data)
    model_pred = np.array([o[0].argmax() for o in outputs])
    ort_exit, ort_pred = apply_thresholds(plan.int8.thresholds, plan.decision, outputs)
    from eenn_tvm.targets.host import EarlyExitRunner, HostModule

    module = HostModule.load(plan.artifact(folder, "int8_host_module"))
    tvm_exit, tvm_pred, _ = _run_tvm(EarlyExitRunner(module), data)
    return {
        "model_accuracy": float((model_pred == data.y).mean()),
        "onnxruntime": _figures(plan.exits, plan, data, ort_exit, ort_pred),
        "tvm": _figures(plan.exits, plan, data, tvm_exit, tvm_pred),
        "agreement": float(((ort_exit == tvm_exit) & (ort_pred == tvm_pred)).mean()),
        "stream": stream_stage.run_int8(folder, plan, data) if plan.int8.stream and data.is_stream else None,
    }


def _figures(exits: list[PlannedExit], plan: Plan, data: Dataset, exit_index: np.ndarray, pred: np.ndarray) -> dict:
    costs = np.array(macs_by_exit(exits, plan.model.total_macs), dtype=np.float64)
    mean_macs = float(costs[exit_index].mean())
    return {
        "accuracy": float((pred == data.y).mean()),
        "mean_macs": mean_macs,
        "mac_reduction": 1.0 - mean_macs / plan.model.total_macs,
        "exit_histogram": np.bincount(exit_index, minlength=len(exits) + 1).tolist(),
    }


def _tvm_runner(folder: Path, plan: Plan, batch: int, database: str | Path | None):
    """What runs the network on TVM: the saved static host module (one C call per sample) or, from an older
    eenn-tvm, the saved VM module; or one built here with `database`'s kernels, or for `batch` samples per call."""
    from eenn_tvm.network import Network
    from eenn_tvm.passes import ChainExits
    from eenn_tvm.targets.host import BatchRunner, EarlyExitRunner, HostModule, build
    from eenn_tvm.targets.host.static import StaticEarlyExit, build_static

    if batch == 1 and database is None:
        if plan.artifacts.static_host_module is not None:
            return StaticEarlyExit(plan.artifact(folder, "static_host_module"))
        return EarlyExitRunner(HostModule.load(plan.artifact(folder, "host_module")))
    network = Network.from_augment(folder, plan, batch)
    if batch > 1:
        return BatchRunner(HostModule(build(network.mod, database=database, opaque_activations=True)), batch)
    with tempfile.TemporaryDirectory(prefix="eenn-run-") as work:
        try:
            build_static(network, Path(work) / "eenn_host_static.so", database=database)
            return StaticEarlyExit(Path(work) / "eenn_host_static.so")  # loaded: the file may go
        except EennError:
            return EarlyExitRunner(HostModule(build(ChainExits()(network.mod), database=database)))


def _run_tvm(runner, data: Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """(exit index, class) per sample and the seconds of inference: compacted batches (a `BatchRunner`), or one
    sample per call of `runner.infer`."""
    from eenn_tvm.targets.host import BatchRunner

    started = time.perf_counter()
    if isinstance(runner, BatchRunner):
        exits, logits = runner.run(data.x)
        return exits, logits.reshape(len(data), -1).argmax(1), time.perf_counter() - started
    exits, preds = np.zeros(len(data), np.int64), np.zeros(len(data), np.int64)
    for i in progress(range(len(data)), "early-exit inference (TVM)"):
        exits[i], logits = runner.infer(data.x[i : i + 1])
        preds[i] = logits.argmax()
    return exits, preds, time.perf_counter() - started


def _thresholds(exits: list[PlannedExit]) -> list[float]:
    return [e.threshold for e in exits]


def apply_thresholds(
    thresholds: list[float], rule: str, outputs: list[list[np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The cascade in numpy on the outputs [final, exit_0, exit_1, ...] of each sample."""
    n = len(outputs)
    exit_index = np.full(n, len(thresholds), np.int64)
    preds = np.array([o[0].argmax() for o in outputs])
    alive = np.ones(n, bool)
    for i, threshold in enumerate(thresholds):
        logits = np.concatenate([o[1 + i] for o in outputs])
        leave = alive & (confidence(logits, rule) >= np.float32(threshold))
        exit_index[leave] = i
        preds[leave] = logits[leave].argmax(1)
        alive &= ~leave
    return exit_index, preds


def _onnx_outputs(path: Path, data: Dataset) -> list[list[np.ndarray]]:
    return onnx_runtime.run_each(onnx_runtime.session(path), data.x)
