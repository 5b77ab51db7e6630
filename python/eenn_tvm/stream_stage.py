"""The stream decisions in the stages: `augment --stream` certifies a rule on the validation streams and records it
in the plan; `run` on stream data runs the windows in order with it (eenn.onnx and the tap in onnxruntime, the
decisions in numpy: `eenn_tvm.stream`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx

from eenn_tvm import onnx_runtime
from eenn_tvm.analysis import Analysis, ExitPoint
from eenn_tvm.data import Dataset
from eenn_tvm.decision import confidence
from eenn_tvm.errors import EennError
from eenn_tvm.heads import Head
from eenn_tvm.plan import Plan, StreamDecision, StreamEvaluation, macs_by_exit
from eenn_tvm.stream import MAX_TAPS, Rule, Windows, calibrate, decide

TAP_POOLING = "gap"


def require_streams(data: Dataset, where: str) -> None:
    if data.order is None:
        raise EennError(
            f"{where}: --stream needs stream data: arrays stream (N,) and order (N,) beside x and y "
            "(see docs/streams.md; examples/ecg/make_data.py --stream makes some)"
        )


def certify(plan: Plan, analysis: Analysis, features, heads: list[Head], data: Dataset, val_idx, confidence_level):
    """The cheapest certified stream rule on the validation streams, as the plan's stream section."""
    scores = [head.logits(features.pooled[e.point][head.pooling][val_idx]) for e, head in zip(plan.exits, heads)]
    taps = _taps(analysis, plan)
    windows = _windows(
        plan,
        data.groups[val_idx],
        data.y[val_idx],
        features.final[val_idx].argmax(1),
        scores,
        [features.pooled[t.name][TAP_POOLING][val_idx] for t in taps],
        taps,
    )
    tolerance = plan.search.max_accuracy_drop
    certified = [e.threshold for e in plan.exits]
    calibrated = calibrate(windows, certified, tolerance, confidence_level)
    rule = calibrated.rule or Rule(tuple(certified), 0, 0.0, 1, 1.0)
    tap = taps[rule.tap]
    return StreamDecision(
        tap=tap.name,
        tap_shape=tap.shape,
        tap_macs=tap.macs_before,
        overhead_ops=_overhead(tap.shape),
        reuse_below=rule.reuse_below,
        patience=rule.patience,
        patient_scale=rule.patient_scale,
        thresholds=list(rule.thresholds),
        p_value=calibrated.p_value,
        validation=evaluation(windows, rule, plan),
    )


def _taps(analysis: Analysis, plan: Plan) -> list[ExitPoint]:
    """Up to MAX_TAPS candidate points, evenly spaced, at or before the first exit (all points when none)."""
    limit = plan.exits[0].macs_to_reach if plan.exits else analysis.total_macs
    early = [p for p in analysis.exit_points if p.macs_before <= limit]
    picks = np.unique(np.linspace(0, len(early) - 1, MAX_TAPS).round().astype(int))
    return [early[i] for i in picks]


def _overhead(shape: list[int]) -> int:
    return math.prod(shape[1:]) + shape[1]  # the pooling's adds, then one difference per channel


def _windows(plan: Plan, stream, label, final, scores, tap_features, taps) -> Windows:
    return Windows(
        stream=stream,
        label=label,
        final=final,
        confidence=np.array([confidence(s, plan.decision) for s in scores]).reshape(len(scores), len(label)),
        prediction=np.array([s.argmax(1) for s in scores]).reshape(len(scores), len(label)),
        exit_macs=[float(m) for m in macs_by_exit(plan.exits, plan.model.total_macs)],
        taps=[np.asarray(f, np.float32) for f in tap_features],
        tap_reach=[float(t.macs_before) for t in taps],
        tap_overhead=[float(_overhead(t.shape)) for t in taps],
    )


def evaluation(windows: Windows, rule: Rule, plan: Plan) -> StreamEvaluation:
    decisions = decide(windows, [rule])
    slot = decisions.slot[0]
    mean_macs = float(decisions.macs[0].mean())
    return StreamEvaluation(
        samples=len(slot),
        streams=len(np.unique(windows.stream)),
        baseline_accuracy=float((windows.final == windows.label).mean()),
        accuracy=float((decisions.answer[0] == windows.label).mean()),
        mean_macs=mean_macs,
        mac_fraction=mean_macs / plan.model.total_macs,
        reused=int((slot < 0).sum()),
        exit_histogram=np.bincount(slot[slot >= 0], minlength=len(plan.exits) + 1).tolist(),
    )


def run(folder: Path, plan: Plan, data: Dataset, eenn: list[list[np.ndarray]]) -> dict:
    """The plan's stream decisions over `data`'s streams in order, given eenn.onnx's outputs on each window: figures
    as in the plan's stream section, and the per-window decisions (class; exit, the end, or -1: reused)."""
    stream = plan.stream
    scores = [np.concatenate([o[1 + j] for o in eenn]) for j in range(len(plan.exits))]
    final = np.array([o[0].argmax() for o in eenn])
    model = onnx.load(str(plan.artifact(folder, "model_onnx")))
    model.graph.output.append(onnx.helper.make_tensor_value_info(stream.tap, onnx.TensorProto.FLOAT, None))
    taps = onnx_runtime.run_each(onnx_runtime.session(model), data.x)
    tap = np.concatenate([t[-1].reshape(1, stream.tap_shape[1], -1).mean(-1) for t in taps])
    windows = _windows(plan, data.groups, data.y, final, scores, [tap], [_Tap(stream)])
    rule = Rule(tuple(stream.thresholds), 0, stream.reuse_below, stream.patience, stream.patient_scale)
    figures = evaluation(windows, rule, plan).model_dump()
    decisions = decide(windows, [rule])
    figures["accuracy_drop"] = figures["baseline_accuracy"] - figures["accuracy"]
    figures["mac_reduction"] = 1.0 - figures["mac_fraction"]
    figures["answers"] = decisions.answer[0].tolist()
    figures["slots"] = decisions.slot[0].tolist()
    figures["static_host_agreement"] = _compiled_agreement(folder, plan, data, decisions)
    return figures


def _compiled_agreement(folder: Path, plan: Plan, data: Dataset, decisions) -> float | None:
    """The share of windows on which the static host module's compiled rule (eenn_infer_stream, each stream from
    a reset) takes the numpy rule's decision: exit or reuse, and class. None without a static host module that has
    the rule (an older eenn-tvm's)."""
    if plan.artifacts.static_host_module is None:
        return None
    from eenn_tvm.targets.host.static import StaticEarlyExit

    static = StaticEarlyExit(plan.artifact(folder, "static_host_module"))
    if not static.decides_streams:
        return None
    slots, scores = static.run_streams(data.x, data.groups)
    return float(((slots == decisions.slot[0]) & (scores.argmax(1) == decisions.answer[0])).mean())


class _Tap:
    """The plan's tap as `_windows` reads a point."""

    def __init__(self, stream: StreamDecision):
        self.macs_before, self.shape = stream.tap_macs, stream.tap_shape
