"""Temporal decisions for streams: windows of a recording, decided in order, using what came before.

Two decisions on top of the per-sample cascade (its exits, with thresholds of their own):
- reuse (difference detection): the backbone runs up to the tap (a candidate point at or before the first exit);
  when the mean absolute difference between the tap's global-average-pooled features and those of the last window
  that was computed in full is below `reuse_below`, the window takes that window's answer and nothing else runs;
- patience: an exit whose class equals each of the stream's last `patience` answers leaves when its confidence
  reaches `patient_scale` times its threshold (the answers of reused windows count).
The state of a stream: the reference features, the last answers; a new stream starts empty (a reset).

The tap's features are float32 channel averages (a float network), or int32 channel sums of the tap's int8 codes
(an int8 network: the zero point cancels in a difference and the scale and the count only scale the distance, so
they fold into `reuse_below`). `distance` is the one definition of the test, which the C driver computes alike:
float32 mean absolute difference, or the exact int32 sum of absolute differences.

Calibration (`calibrate`) is Learn-then-Test as for the per-sample thresholds (eenn_tvm.guarantee), with the stream
(or the group of streams the data name: a speaker's) as the exchangeable unit: the validation units are cut in two;
on the first part every rule of a grid (how far the cascade's thresholds go, tap, reuse_below, patience,
patient_scale) is simulated, and the rules on its cost/drop Pareto front are ordered from the costliest (the safest)
to the cheapest; on the second part they are tested in that order against H0 "the drop against the original model
exceeds the tolerance" with the units as groups, stopping at the first that is not rejected; the cheapest rejected
rule on all validation streams is chosen.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from eenn_tvm.guarantee import drop_p_value, in_selection

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # of the samples each exit lets out at its certified threshold
REUSE_LEVELS = 12  # distance thresholds per tap: quantiles of the distances between consecutive windows
PATIENCE = (1, 2, 3)
PATIENT_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
MAX_TAPS = 3


@dataclass(frozen=True)
class Rule:
    thresholds: tuple[float, ...]  # per exit of the cascade
    tap: int  # index into `Windows.taps`
    reuse_below: float  # 0: never reuse
    patience: int
    patient_scale: float


@dataclass
class Windows:
    """What the decisions need of each window, in stream order (stream by stream, each in order)."""

    stream: np.ndarray  # (N,) int
    label: np.ndarray  # (N,)
    final: np.ndarray  # (N,) the original model's class
    confidence: np.ndarray  # (exits, N)
    prediction: np.ndarray  # (exits, N)
    exit_macs: list[float]  # per exit then the end: MACs of leaving there (macs_by_exit)
    taps: list[np.ndarray]  # per tap: (N, channels) float32 averages, or int64 sums of int8 codes (`distance`)
    tap_reach: list[float]  # per tap: MACs of the backbone up to it
    tap_overhead: list[float]  # per tap: operations of pooling it and of the distance, paid whenever reuse is on
    groups: np.ndarray | None = None  # (N,) int: the independent units (speakers, patients); None: the streams

    @property
    def units(self) -> np.ndarray:
        """What the certificate counts as exchangeable: the groups, else the streams."""
        return self.stream if self.groups is None else self.groups

    def subset(self, keep: np.ndarray) -> Windows:
        return Windows(
            self.stream[keep],
            self.label[keep],
            self.final[keep],
            self.confidence[:, keep],
            self.prediction[:, keep],
            self.exit_macs,
            [t[keep] for t in self.taps],
            self.tap_reach,
            self.tap_overhead,
            None if self.groups is None else self.groups[keep],
        )


def tap_features(tap: np.ndarray) -> np.ndarray:
    """(N, channels) features of a batch of tap tensors (N, C, ...): float32 channel averages, or for int8 codes
    their int64 channel sums (what `TapFeatures` makes the first segment return)."""
    flat = tap.reshape(len(tap), tap.shape[1], -1)
    if tap.dtype == np.int8:
        return flat.astype(np.int64).sum(-1)
    return flat.mean(-1, dtype=np.float32)


def integer_features(features: np.ndarray) -> bool:
    return np.issubdtype(features.dtype, np.integer)


def distance(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The reuse test's distance over the last axis: float32 mean absolute difference, or for integer features
    the exact sum of absolute differences (an int32 in the firmware: eenn_sum_abs_difference_s32)."""
    if integer_features(features):
        return np.abs(features - reference).sum(-1)
    return np.abs(features - reference).mean(-1)


def _reuse_levels(distances: np.ndarray, integer: bool) -> list[float]:
    """0 (never reuse), then distance thresholds at quantiles of the distances between consecutive windows (whole
    numbers for integer features, so that `distance < level` is the firmware's integer comparison)."""
    levels = np.quantile(distances, np.linspace(0.05, 0.95, REUSE_LEVELS))
    return [0.0, *np.unique(np.ceil(levels) if integer else levels).tolist()]


@dataclass
class Decisions:
    """Per rule (rows) and window (columns)."""

    answer: np.ndarray  # class
    slot: np.ndarray  # exit index, exits = the end, -1 = reused
    macs: np.ndarray


def decide(windows: Windows, rules: list[Rule]) -> Decisions:
    """The stream decisions of every rule (all with the same tap) on every window: the streams side by side, one
    position at a time."""
    tap = rules[0].tap
    features = windows.taps[tap]
    thresholds = np.array([r.thresholds for r in rules], np.float32).reshape(len(rules), -1)
    integer = integer_features(features)
    reuse_below = np.array([r.reuse_below for r in rules], np.int64 if integer else np.float32)[:, None]
    patience = np.array([r.patience for r in rules])
    scale = np.array([r.patient_scale for r in rules], np.float32)
    patient_thresholds = np.where(np.isinf(thresholds), thresholds, thresholds * scale[:, None])
    counted = np.arange(max(PATIENCE))[None, :] < patience[:, None]  # (rules, history)
    exits = thresholds.shape[1]
    exit_macs = np.array(windows.exit_macs, np.float64)
    overhead = np.where(reuse_below > 0, windows.tap_overhead[tap], 0.0)  # (rules, 1)

    names, starts, lengths = np.unique(windows.stream, return_index=True, return_counts=True)
    rules_n, streams_n = len(rules), len(names)
    reference = np.zeros((rules_n, streams_n, features.shape[1]), features.dtype)
    history = np.full((rules_n, streams_n, max(PATIENCE)), -1)
    out = Decisions(*(np.zeros((rules_n, len(windows.stream)), dtype) for dtype in (np.int64, np.int64, np.float64)))
    for t in range(int(lengths.max())):
        live = np.flatnonzero(lengths > t)
        at = starts[live] + t
        apart = distance(features[at][None], reference[:, live])  # (rules, live)
        reused = (apart < reuse_below) if t > 0 else np.zeros_like(apart, bool)
        answer = np.broadcast_to(windows.final[at], reused.shape).copy()
        slot = np.full(reused.shape, exits)
        undecided = ~reused
        for j in range(exits):
            predicted = windows.prediction[j, at]
            agrees = ((history[:, live] == predicted[None, :, None]) | ~counted[:, None, :]).all(-1)
            level = np.where(agrees, patient_thresholds[:, j : j + 1], thresholds[:, j : j + 1])
            leave = undecided & (windows.confidence[j, at][None] >= level)
            answer[leave], slot[leave] = np.broadcast_to(predicted, leave.shape)[leave], j
            undecided &= ~leave
        previous = history[:, live, 0]
        answer[reused], slot[reused] = previous[reused], -1
        reference[:, live] = np.where(reused[..., None], reference[:, live], features[at][None])
        history[:, live] = np.concatenate([answer[..., None], history[:, live, :-1]], -1)
        macs = np.where(reused, windows.tap_reach[tap], exit_macs[slot]) + overhead
        out.answer[:, at], out.slot[:, at], out.macs[:, at] = answer, slot, macs
    return out


def decide_all(windows: Windows, rules: list[Rule]) -> Decisions:
    """`decide` for rules with any taps, rows in the order of `rules`."""
    parts, rows = [], []
    for tap in sorted({r.tap for r in rules}):
        index = [i for i, r in enumerate(rules) if r.tap == tap]
        parts.append(decide(windows, [rules[i] for i in index]))
        rows += index
    order = np.argsort(rows)
    return Decisions(*(np.concatenate([getattr(p, f) for p in parts])[order] for f in ("answer", "slot", "macs")))


def grid(windows: Windows, certified: list[float]) -> list[Rule]:
    """The rules calibration considers: cascades from no exit to the certified thresholds, every tap, reuse levels
    from the distances between consecutive windows, patience and patient scales."""
    cascades = sorted({_cascade(windows, certified, share) for share in SHARES})
    first = np.r_[True, windows.stream[1:] != windows.stream[:-1]]
    rules = []
    for tap, features in enumerate(windows.taps):
        apart = distance(features[1:], features[:-1])[~first[1:]]
        levels = _reuse_levels(apart, integer_features(features))
        for thresholds, below, k, scale in itertools.product(cascades, levels, PATIENCE, PATIENT_SCALES):
            rules.append(Rule(thresholds, tap, float(below), k, scale))
    return rules


def _cascade(windows: Windows, certified: list[float], share: float) -> tuple[float, ...]:
    """Thresholds letting out `share` of the windows the certified ones let out at each exit (on these windows)."""
    thresholds = []
    for j, threshold in enumerate(certified):
        ranked = np.sort(windows.confidence[j])[::-1]
        leaving = min(int(np.floor(share * np.count_nonzero(ranked >= np.float32(threshold)) + 1e-9)), len(ranked))
        thresholds.append(math.inf if leaving == 0 else float(ranked[leaving - 1]))
    return tuple(thresholds)


def _front(cost: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """The rules no cheaper rule matches in drop (the cost/drop Pareto front), costliest (safest) first: along it
    the drop grows as the cost falls, so the fixed-sequence test meets the risky ones last."""
    front, least = [], np.inf
    for i in np.lexsort((drop, cost)):  # cheapest first
        if drop[i] < least:
            front.append(i)
            least = drop[i]
    return np.array(front[::-1], dtype=np.int64)


@dataclass
class Calibrated:
    rule: Rule | None  # None: no rule passed the test (the stream mode then runs the plain cascade, no reuse)
    p_value: float


def calibrate(windows: Windows, certified: list[float], tolerance: float, confidence: float) -> Calibrated:
    """The cheapest rule of the grid whose drop on new streams stays within `tolerance` (Learn-then-Test)."""
    error = 1.0 - confidence
    selected = in_selection(windows.units)
    selection, testing = windows.subset(selected), windows.subset(~selected)
    rules = grid(selection, certified)
    on_selection = decide_all(selection, rules)
    reference = selection.final == selection.label
    drop = reference.mean() - (on_selection.answer == selection.label).mean(1)
    cost = on_selection.macs.mean(1)
    order = _front(cost, drop)
    on_testing = decide_all(testing, [rules[i] for i in order])
    on_all = decide_all(windows, [rules[i] for i in order]).macs.mean(1)
    testing_reference = testing.final == testing.label
    best, best_p = None, 1.0
    for position in range(len(order)):
        correct = on_testing.answer[position] == testing.label
        p = drop_p_value(testing_reference, correct, tolerance, error, testing.units, serial=True)
        if p > error:
            break
        if best is None or on_all[position] < on_all[best]:
            best, best_p = position, p
    rule = None if best is None else rules[order[best]]
    return Calibrated(rule, best_p)
