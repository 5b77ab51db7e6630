"""Run a built early-exit network on labelled data, one sample at a time, and measure what it saves.

Two engines: `tvm` runs the host module `augment` built (exit logic compiled in); `onnxruntime` runs
eenn.onnx and applies the plan's rule and thresholds in numpy, so the figures can be checked
independently. Beside them, on the same data: the original model (the first output of eenn.onnx) and
the Shallow-Deep-Networks style baseline (baseline.onnx with its one threshold), both in onnxruntime.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.data import Dataset
from eenn_tvm.decision import confidence
from eenn_tvm.plan import Plan, PlannedExit
from eenn_tvm.textui import progress

ENGINES = ("tvm", "onnxruntime")


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
    sdn_baseline: dict  # the Shallow-Deep-Networks style baseline on the same data: accuracy, mac_reduction, ...
    seconds: float
    batch: int  # samples per call of the engine
    inference_seconds: float  # the engine's inference over all samples (no build, no reference runs)
    samples_per_second: float

    def to_json(self) -> dict:
        return asdict(self)


def exit_costs(exits: list[PlannedExit], total_macs: int) -> list[int]:
    """MACs a sample pays when it leaves at exit i (the backbone so far and every head it passed), then at the end."""
    costs, heads = [], 0
    for e in exits:
        heads += e.head_macs
        costs.append(e.macs_to_reach + heads)
    return costs + [total_macs + heads]


def run(
    folder: str | Path,
    plan: Plan,
    data: Dataset,
    engine: str = "tvm",
    batch: int = 1,
    database: str | Path | None = None,
) -> RunResult:
    """`batch` > 1 (tvm only) builds the network for batches of that many samples and compacts them as samples
    leave; `database` (tvm only) rebuilds it with the kernels of a tuning database instead of eenn_host.so."""
    folder = Path(folder)
    start = time.perf_counter()
    started = time.perf_counter()
    eenn_outputs = _onnx_outputs(folder / plan.artifacts["eenn_onnx"], plan, data)
    inference_seconds = time.perf_counter() - started
    baseline_pred = np.array([o[0].argmax() for o in eenn_outputs])
    if engine == "tvm":
        exit_index, pred, inference_seconds = _run_tvm(folder, plan, data, batch, database)
    elif engine == "onnxruntime":
        exit_index, pred = _apply_thresholds(plan.exits, plan.decision, eenn_outputs)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    sdn_outputs = _onnx_outputs(folder / plan.artifacts["baseline_onnx"], plan, data)
    sdn = _figures(plan.baseline.exits, plan, data, *_apply_thresholds(plan.baseline.exits, plan.decision, sdn_outputs))
    ours = _figures(plan.exits, plan, data, exit_index, pred)
    baseline_accuracy = float((baseline_pred == data.y).mean())
    return RunResult(
        engine=engine,
        samples=len(data),
        baseline_accuracy=baseline_accuracy,
        accuracy_drop=baseline_accuracy - ours["accuracy"],
        total_macs=plan.model["total_macs"],
        **ours,
        sdn_baseline=sdn,
        seconds=time.perf_counter() - start,
        batch=batch,
        inference_seconds=inference_seconds,
        samples_per_second=len(data) / inference_seconds,
    )


def _figures(exits: list[PlannedExit], plan: Plan, data: Dataset, exit_index: np.ndarray, pred: np.ndarray) -> dict:
    costs = np.array(exit_costs(exits, plan.model["total_macs"]), dtype=np.float64)
    mean_macs = float(costs[exit_index].mean())
    return {
        "accuracy": float((pred == data.y).mean()),
        "mean_macs": mean_macs,
        "mac_reduction": 1.0 - mean_macs / plan.model["total_macs"],
        "exit_histogram": np.bincount(exit_index, minlength=len(exits) + 1).tolist(),
    }


def _run_tvm(
    folder: Path, plan: Plan, data: Dataset, batch: int, database: str | Path | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """(exit index, class, seconds of inference) per sample: the saved module one sample per call, or a module
    built here for `batch` samples per call or with `database`."""
    from eenn_tvm.firmware import eenn_network
    from eenn_tvm.passes import ChainExits
    from eenn_tvm.targets.host import BatchRunner, EarlyExitRunner, HostModule, build

    if batch == 1 and database is None:
        module = HostModule.load(folder / plan.artifacts["host_module"])
    else:
        network = eenn_network(folder, plan, batch)
        mod = network.mod if batch > 1 else ChainExits()(network.mod)
        module = HostModule(build(mod, database=database, opaque_activations=batch > 1))
    started = time.perf_counter()
    if batch > 1:
        exits, logits = BatchRunner(module, batch).run(data.x)
        return exits, logits.reshape(len(data), -1).argmax(1), time.perf_counter() - started
    runner = EarlyExitRunner(module)
    exits, preds = np.zeros(len(data), np.int64), np.zeros(len(data), np.int64)
    for i in progress(range(len(data)), "early-exit inference (TVM)"):
        exits[i], logits = runner.infer(data.x[i : i + 1])
        preds[i] = logits.argmax()
    return exits, preds, time.perf_counter() - started


def _apply_thresholds(
    exits: list[PlannedExit], rule: str, outputs: list[list[np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The cascade in numpy on the outputs [final, exit_0, exit_1, ...] of each sample."""
    n = len(outputs)
    exit_index = np.full(n, len(exits), np.int64)
    preds = np.array([o[0].argmax() for o in outputs])
    alive = np.ones(n, bool)
    for i, e in enumerate(exits):
        logits = np.concatenate([o[1 + i] for o in outputs])
        leave = alive & (confidence(logits, rule) >= np.float32(e.threshold))
        exit_index[leave] = i
        preds[leave] = logits[leave].argmax(1)
        alive &= ~leave
    return exit_index, preds


def _onnx_outputs(path: Path, plan: Plan, data: Dataset) -> list[list[np.ndarray]]:
    """All outputs of an ONNX model for each sample, one sample at a time (the models have batch 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = plan.model["input_name"]
    return [session.run(None, {name: data.x[i : i + 1]}) for i in range(len(data))]
