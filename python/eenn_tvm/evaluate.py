"""Run a built early-exit network on labelled data, one sample at a time, and measure what it saves.

Two engines: `tvm` runs the host module `augment` built (exit logic compiled in); `onnxruntime` runs
eenn.onnx and applies the plan's rule and thresholds in numpy, so the figures can be checked
independently. The baseline is the original model (the first output of eenn.onnx) in onnxruntime.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import Dataset
from .decision import confidence
from .plan import Plan
from .textui import progress

ENGINES = ("tvm", "onnxruntime")


@dataclass
class RunResult:
    engine: str
    samples: int
    baseline_accuracy: float
    accuracy: float
    accuracy_drop: float
    total_macs: int
    mean_macs: float
    mac_reduction: float  # 1 - mean MACs per inference / the original model's MACs
    exit_histogram: list[int]  # samples leaving at each exit, then at the end
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


def exit_costs(plan: Plan) -> list[int]:
    """MACs a sample pays when it leaves at exit i (the backbone so far and every head it passed), then at the end."""
    costs, heads = [], 0
    for e in plan.exits:
        heads += e.head_macs
        costs.append(e.macs_to_reach + heads)
    return costs + [plan.model["total_macs"] + heads]


def run(folder: str | Path, plan: Plan, data: Dataset, engine: str = "tvm") -> RunResult:
    folder = Path(folder)
    start = time.perf_counter()
    session = _onnx_session(folder / plan.artifacts["eenn_onnx"])
    ort_outputs = [session.run(None, {plan.model["input_name"]: data.x[i : i + 1]}) for i in range(len(data))]
    baseline_pred = np.array([o[0].argmax() for o in ort_outputs])
    if engine == "tvm":
        exit_index, pred = _run_tvm(folder / plan.artifacts["host_module"], data)
    elif engine == "onnxruntime":
        exit_index, pred = _apply_thresholds(plan, ort_outputs)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    costs = np.array(exit_costs(plan), dtype=np.float64)
    mean_macs = float(costs[exit_index].mean())
    total = plan.model["total_macs"]
    baseline_accuracy = float((baseline_pred == data.y).mean())
    accuracy = float((pred == data.y).mean())
    return RunResult(
        engine=engine,
        samples=len(data),
        baseline_accuracy=baseline_accuracy,
        accuracy=accuracy,
        accuracy_drop=baseline_accuracy - accuracy,
        total_macs=total,
        mean_macs=mean_macs,
        mac_reduction=1.0 - mean_macs / total,
        exit_histogram=np.bincount(exit_index, minlength=len(plan.exits) + 1).tolist(),
        seconds=time.perf_counter() - start,
    )


def _run_tvm(module_path: Path, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    from .targets.host import EarlyExitRunner, HostModule

    runner = EarlyExitRunner(HostModule.load(module_path))
    exits, preds = np.zeros(len(data), np.int64), np.zeros(len(data), np.int64)
    for i in progress(range(len(data)), "early-exit inference (TVM)"):
        exits[i], logits = runner.infer(data.x[i : i + 1])
        preds[i] = logits.argmax()
    return exits, preds


def _apply_thresholds(plan: Plan, outputs: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The cascade in numpy on eenn.onnx's outputs: [final, exit_0, exit_1, ...] per sample."""
    n = len(outputs)
    exits = np.full(n, len(plan.exits), np.int64)
    preds = np.array([o[0].argmax() for o in outputs])
    alive = np.ones(n, bool)
    for i, e in enumerate(plan.exits):
        logits = np.concatenate([o[1 + i] for o in outputs])
        leave = alive & (confidence(logits, plan.decision) >= np.float32(e.threshold))
        exits[leave] = i
        preds[leave] = logits[leave].argmax(1)
        alive &= ~leave
    return exits, preds


def _onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
