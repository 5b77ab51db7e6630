"""The stream decisions in the stages: `augment --stream` certifies a rule on the validation streams and records it
in the plan, and `quantize` certifies one again for the int8 network (its scores, its taps' int8 codes); `run` on
stream data runs the windows in order with them (eenn.onnx or eenn_int8.onnx and the tap in onnxruntime, the
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
from eenn_tvm.stream import MAX_TAPS, Decisions, Rule, Windows, calibrate, decide, integer_features, tap_features

TAP_POOLING = "gap"
INT8_CODES = "_QuantizeLinear_Output"  # onnxruntime's name for a tensor's int8 codes in a QDQ model


def require_streams(data: Dataset, where: str) -> None:
    if not data.is_stream:
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
        data.stream[val_idx],
        data.y[val_idx],
        features.final[val_idx].argmax(1),
        scores,
        [features.pooled[t.name][TAP_POOLING][val_idx] for t in taps],
        taps,
        groups=data.groups[val_idx],
    )
    certified = [e.threshold for e in plan.exits]
    return _decision(
        plan, windows, taps, [t.name for t in taps], certified, plan.search.max_accuracy_drop, confidence_level
    )


def int8_taps(analysis: Analysis, plan: Plan, int8: onnx.ModelProto) -> list[tuple[ExitPoint, str]]:
    """The candidate taps of `certify` that the int8 network holds as int8 codes, with the name of that tensor."""
    quantized = {o for node in int8.graph.node if node.op_type == "QuantizeLinear" for o in node.output}
    named = [(t, f"{t.name}{INT8_CODES}") for t in _taps(analysis, plan)]
    return [(t, name) for t, name in named if name in quantized]


def certify_int8(
    plan: Plan,
    taps: list[tuple[ExitPoint, str]],
    outputs: list[list[np.ndarray]],
    labels: np.ndarray,
    streams: np.ndarray,
    groups: np.ndarray,
    thresholds: list[float],
    tolerance: float,
    confidence_level: float,
) -> StreamDecision:
    """The stream rule certified again for the int8 network, on its outputs per validation window (eenn_int8.onnx
    with the taps' int8 codes appended: [final, exit_0, ..., tap_0, ...]) and from its own per-sample `thresholds`;
    the drop is against the int8 model, within `tolerance` (the plan's, narrowed by the float-to-int8 gap)."""
    exits = len(plan.exits)
    codes = [tap_features(np.concatenate([o[1 + exits + k] for o in outputs])) for k in range(len(taps))]
    points = [t for t, _ in taps]
    windows = windows_of(plan, outputs, streams, labels, codes, points, groups=groups)
    names = [name for _, name in taps]
    decision = _decision(plan, windows, points, names, thresholds, tolerance, confidence_level)
    return decision.model_copy(update={"tap_dtype": "int8"})


def _decision(plan: Plan, windows: Windows, taps: list, names: list[str], certified, tolerance, confidence_level):
    calibrated = calibrate(windows, certified, tolerance, confidence_level)
    rule = calibrated.rule or Rule(tuple(certified), 0, 0.0, 1, 1.0)
    tap = taps[rule.tap]
    return StreamDecision(
        tap=names[rule.tap],
        tap_shape=tap.shape,
        tap_macs=tap.macs_before,
        overhead_ops=_overhead(tap.shape),
        reuse_below=rule.reuse_below,
        patience=rule.patience,
        patient_scale=rule.patient_scale,
        thresholds=list(rule.thresholds),
        p_value=calibrated.p_value,
        validation=evaluation(windows, decide(windows, [rule]), plan),
    )


def _taps(analysis: Analysis, plan: Plan) -> list[ExitPoint]:
    """Up to MAX_TAPS candidate points, evenly spaced, at or before the first exit (all points when none)."""
    limit = plan.exits[0].macs_to_reach if plan.exits else analysis.total_macs
    early = [p for p in analysis.exit_points if p.macs_before <= limit]
    picks = np.unique(np.linspace(0, len(early) - 1, MAX_TAPS).round().astype(int))
    return [early[i] for i in picks]


def _overhead(shape: list[int]) -> int:
    return math.prod(shape[1:]) + shape[1]  # the pooling's adds, then one difference per channel


def windows_of(plan: Plan, outputs: list[list[np.ndarray]], stream, label, tap_features, taps, groups=None) -> Windows:
    """`stream_windows` of a network's outputs per window ([final, exit_0, ...], anything after them ignored)."""
    scores = [np.concatenate([o[1 + j] for o in outputs]) for j in range(len(plan.exits))]
    final = np.array([o[0].argmax() for o in outputs])
    return _windows(plan, stream, label, final, scores, tap_features, taps, groups=groups)


def _windows(plan: Plan, *args, groups=None) -> Windows:
    return stream_windows(plan.decision, macs_by_exit(plan.exits, plan.model.total_macs), *args, groups=groups)


def stream_windows(decision: str, exit_macs, stream, label, final, scores, tap_features, taps, groups=None) -> Windows:
    """What the rule needs of each window: its stream, label, the original model's class, each exit's logits
    (`scores`, per exit (N, classes)), each tap's features, the points of the taps (MACs, shape) and, to certify,
    the groups (Windows.units)."""
    return Windows(
        stream=stream,
        label=label,
        final=final,
        confidence=np.array([confidence(s, decision) for s in scores]).reshape(len(scores), len(label)),
        prediction=np.array([s.argmax(1) for s in scores]).reshape(len(scores), len(label)),
        exit_macs=[float(m) for m in exit_macs],
        taps=[f if integer_features(f) else np.asarray(f, np.float32) for f in tap_features],
        tap_reach=[float(t.macs_before) for t in taps],
        tap_overhead=[float(_overhead(t.shape)) for t in taps],
        groups=groups,
    )


def evaluation(windows: Windows, decisions: Decisions, plan: Plan) -> StreamEvaluation:
    """The figures of one rule's `decisions` (row 0) over `windows`."""
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
    taps = outputs_with_tap(plan.artifact(folder, "model_onnx"), plan.stream, data.x)
    return _figures(plan, plan.stream, data, eenn, tap_features(np.concatenate([t[-1] for t in taps])))


def run_int8(folder: Path, plan: Plan, data: Dataset) -> dict:
    """The int8 network's stream decisions (the plan's `int8.stream`) as `run` gives the float one's: eenn_int8.onnx
    in onnxruntime with the tap's int8 codes appended, the rule in numpy."""
    outputs = outputs_with_tap(plan.artifact(folder, "eenn_int8_onnx"), plan.int8.stream, data.x)
    tap = tap_features(np.concatenate([o[-1] for o in outputs]))
    return _figures(plan, plan.int8.stream, data, outputs, tap)


def outputs_with_tap(path: Path, stream: StreamDecision, x: np.ndarray) -> list[list[np.ndarray]]:
    """The outputs of the model at `path` on every window of `x`, the stream rule's tap appended."""
    model = onnx.load(str(path))
    element = onnx.TensorProto.INT8 if stream.tap_dtype == "int8" else onnx.TensorProto.FLOAT
    model.graph.output.append(onnx.helper.make_tensor_value_info(stream.tap, element, None))
    return onnx_runtime.run_each(onnx_runtime.session(model), x)


def _figures(plan: Plan, stream: StreamDecision, data: Dataset, outputs: list[list[np.ndarray]], tap) -> dict:
    windows = windows_of(plan, outputs, data.stream, data.y, [tap], [Tap(stream)])
    decisions = decide(windows, [rule_of(stream)])
    figures = evaluation(windows, decisions, plan).model_dump()
    figures["accuracy_drop"] = figures["baseline_accuracy"] - figures["accuracy"]
    figures["mac_reduction"] = 1.0 - figures["mac_fraction"]
    figures["answers"] = decisions.answer[0].tolist()
    figures["slots"] = decisions.slot[0].tolist()
    return figures


def rule_of(stream: StreamDecision) -> Rule:
    """The recorded rule, on its one tap."""
    return Rule(tuple(stream.thresholds), 0, stream.reuse_below, stream.patience, stream.patient_scale)


class Tap:
    """The recorded rule's tap as `stream_windows` reads a point."""

    def __init__(self, stream: StreamDecision):
        self.macs_before, self.shape = stream.tap_macs, stream.tap_shape
