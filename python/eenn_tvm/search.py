"""Search: which exits to keep, which head at each, and their thresholds.

Minimises the expected cost per inference on the validation split subject to validation accuracy
>= the original model's validation accuracy minus the tolerance. Costs come from the caller (MACs by
default; a cost model plugs in the same way), so the search knows nothing about what a cost is.

Every sample runs one at a time through the cascade: it leaves at the first exit whose confidence
reaches that exit's threshold, else it runs to the end, and pays the backbone up to where it leaves
plus every head it passed through.

The method is a greedy descent followed by exact coordinate descent. Its engine evaluates, for one
point and all (head, threshold) choices there at once, the cost and accuracy of the whole cascade:
the samples that reach the point and what each would cost if it went on are fixed by the other exits,
so a sort of the point's confidences and two cumulative sums give every threshold. A step therefore
costs O(points x heads x N log N), whatever the number of candidate points, and a ResNet-152's
~50 points do not blow it up.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

GREEDY_LEVELS = 64  # thresholds per (point, head) the greedy descent considers; refinement considers all
PAIR_LIMIT = 8  # pairwise refinement runs when at most this many exits are kept (its cost grows with them)
EPS = 1e-9


@dataclass
class Option:
    """A trained head at a candidate point, scored on the validation split."""

    point: int  # index of the candidate point, in graph order
    kind: str
    confidence: np.ndarray  # (N,)
    correct: np.ndarray  # (N,) bool
    head_cost: float


@dataclass
class SearchProblem:
    options: list[Option]
    reach_cost: list[float]  # cost of the backbone up to each candidate point
    final_cost: float  # cost of the whole backbone
    final_correct: np.ndarray  # (N,) bool: the original model's correctness
    min_accuracy: float
    groups: np.ndarray | None = None  # (N,) int: samples of one group (speaker, patient) are not independent
    serial: bool = False  # the groups are streams of consecutive windows, alike in runs (eenn_tvm.guarantee)

    @property
    def samples(self) -> int:
        return len(self.final_correct)

    def subset(self, index: np.ndarray) -> SearchProblem:
        """The same problem on some of its samples (the floor unchanged)."""
        options = [replace(o, confidence=o.confidence[index], correct=o.correct[index]) for o in self.options]
        groups = None if self.groups is None else self.groups[index]
        return replace(self, options=options, final_correct=self.final_correct[index], groups=groups)


@dataclass(frozen=True)
class Exit:
    point: int
    option: int  # index into SearchProblem.options
    threshold: float


@dataclass
class Outcome:
    mean_cost: float
    accuracy: float
    exit_counts: list[int]  # samples leaving at each exit, then at the end


@dataclass
class Result:
    exits: list[Exit]
    outcome: Outcome
    pareto: list[tuple[float, float]] = field(default_factory=list)  # (mean cost, accuracy), cost ascending
    feasible: bool = True  # False: no choice of this kind meets the accuracy floor (then no exits)


def outcome_of(problem: SearchProblem, exits: list[Exit]) -> Outcome:
    """The mean cost, the accuracy and the exit counts of the cascade `exits` on the problem's samples."""
    cost, correct, slot = _per_sample(problem, exits)
    counts = np.bincount(slot, minlength=len(exits) + 1)
    return Outcome(float(cost.mean()), float(correct.mean()), counts.tolist())


def correct_of(problem: SearchProblem, exits: list[Exit]) -> np.ndarray:
    """Per sample: is the cascade's answer right?"""
    return _per_sample(problem, exits)[1]


def search(problem: SearchProblem) -> Result:
    """The cheapest cascade within the accuracy floor, and the accuracy/cost Pareto front around it."""
    min_correct = math.ceil(problem.min_accuracy * problem.samples - 1e-6)
    seen: list[tuple[float, int]] = []
    exits = _greedy(problem, {}, min_correct, seen)
    exits = _refine(problem, exits, min_correct, seen)
    exits = _refine_pairs(problem, exits, min_correct, seen)
    # Trace the front further down in accuracy, for the report; the choice above is already made.
    floor = min_correct - max(3 * (problem.samples - min_correct), problem.samples // 20)
    _greedy(problem, dict(exits), max(floor, 0), seen)
    chosen = _as_list(exits)
    return Result(chosen, outcome_of(problem, chosen), _front(seen, problem.samples))


def single_threshold(problem: SearchProblem, options: list[int]) -> Result:
    """The baseline's decision: exits at the given options, one threshold shared by all of them. Infeasible (no
    exits) when no threshold meets the floor: a floor raised by a statistical margin can lie above the original
    model's own accuracy, which even a threshold no sample reaches only matches."""
    pooled = np.concatenate([problem.options[i].confidence for i in options])
    candidates = np.unique(np.quantile(pooled, np.linspace(0, 1, 1001)).astype(np.float32))
    best, seen = None, []
    for t in [*candidates, np.float32(np.inf)]:
        exits = [Exit(problem.options[i].point, i, float(t)) for i in options]
        outcome = outcome_of(problem, exits)
        seen.append((outcome.mean_cost * problem.samples, round(outcome.accuracy * problem.samples)))
        if outcome.accuracy >= problem.min_accuracy - EPS and (
            best is None or outcome.mean_cost < best.outcome.mean_cost
        ):
            best = Result(exits, outcome)
    if best is None:
        return Result([], outcome_of(problem, []), _front(seen, problem.samples), feasible=False)
    best.pareto = _front(seen, problem.samples)
    return best


# --- the engine -------------------------------------------------------------------------------------


def _per_sample(problem: SearchProblem, exits: list[Exit]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: what it costs, whether its answer is right, and where it leaves (len(exits) = the end)."""
    alive, heads, cost, correct, slot = _cascade(problem, exits)
    return np.where(alive, problem.final_cost + heads, cost), np.where(alive, problem.final_correct, correct), slot


def _cascade(problem: SearchProblem, exits: list[Exit]):
    """Per sample: still running after these exits?, head cost paid by one that is, and for those that
    left: their cost, correctness and exit slot."""
    n = problem.samples
    alive = np.ones(n, bool)
    cost = np.zeros(n)
    correct = np.zeros(n, bool)
    slot = np.full(n, len(exits))
    heads = 0.0
    for i, e in enumerate(exits):
        option = problem.options[e.option]
        heads += option.head_cost
        leave = alive & (option.confidence >= np.float32(e.threshold))
        cost[leave] = problem.reach_cost[e.point] + heads
        correct[leave] = option.correct[leave]
        slot[leave] = i
        alive &= ~leave
    return alive, heads, cost, correct, slot


@dataclass
class _Moves:
    """All choices at one point, as arrays: option -1 means no exit there."""

    point: int
    option: np.ndarray  # (M,) int
    threshold: np.ndarray  # (M,) float
    total_cost: np.ndarray  # (M,) float: the whole cascade's summed cost over the samples
    total_correct: np.ndarray  # (M,) int

    def exit(self, i: int) -> Exit | None:
        return None if self.option[i] < 0 else Exit(self.point, int(self.option[i]), float(self.threshold[i]))

    def best_feasible(self, min_correct: int) -> int | None:
        """The cheapest move that keeps the accuracy floor (ties: the more accurate)."""
        feasible = np.flatnonzero(self.total_correct >= min_correct)
        if len(feasible) == 0:
            return None
        order = np.lexsort((-self.total_correct[feasible], self.total_cost[feasible]))
        return int(feasible[order[0]])


def _moves_at(problem: SearchProblem, exits: dict[int, Exit], point: int, levels: int | None) -> _Moves:
    """Every choice at one point (no exit, or a head and a threshold) with the whole cascade's totals."""
    before = _as_list({p: e for p, e in exits.items() if p < point})
    after = _as_list({p: e for p, e in exits.items() if p > point})
    alive, head_before, cost, correct, _ = _cascade(problem, before)
    done_cost, done_correct = cost[~alive].sum(), int(correct[~alive].sum())
    s_alive, s_heads, s_cost, s_correct, _ = _cascade(problem, after)
    rest_cost = np.where(s_alive, problem.final_cost + s_heads, s_cost)[alive]
    rest_correct = np.where(s_alive, problem.final_correct, s_correct)[alive]
    reaching = int(alive.sum())
    base_cost = done_cost + reaching * head_before + rest_cost.sum()
    base_correct = done_correct + int(rest_correct.sum())
    parts = [([-1], [np.inf], [base_cost], [base_correct])]
    for index, option in enumerate(problem.options):
        if option.point != point or reaching == 0:
            continue
        conf = option.confidence[alive]
        order = np.argsort(-conf, kind="stable")
        c = conf[order]
        gain_cost = np.cumsum(problem.reach_cost[point] - rest_cost[order])
        gain_correct = np.cumsum(option.correct[alive][order].astype(np.int64) - rest_correct[order])
        # k samples leave when the threshold lies between the k-th and (k+1)-th confidence.
        ks = np.flatnonzero(np.append(c[:-1] > c[1:], True)) + 1
        if levels is not None and len(ks) > levels:
            ks = np.unique(ks[np.linspace(0, len(ks) - 1, levels).round().astype(int)])
        thresholds = _thresholds_between(c, ks)
        parts.append(
            (
                np.full(len(ks), index),
                thresholds,
                base_cost + reaching * option.head_cost + gain_cost[ks - 1],
                base_correct + gain_correct[ks - 1],
            )
        )
    return _Moves(
        point,
        np.concatenate([np.asarray(p[0], np.int64) for p in parts]),
        np.concatenate([np.asarray(p[1], np.float64) for p in parts]),
        np.concatenate([np.asarray(p[2], np.float64) for p in parts]),
        np.concatenate([np.asarray(p[3], np.int64) for p in parts]),
    )


def _thresholds_between(c: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """For confidences c sorted descending: float32 thresholds t with c[k-1] >= t > c[k], so that
    `confidence >= t` lets exactly the first k leave (t = 0 lets all leave)."""
    upper = c[ks - 1].astype(np.float64)
    lower = c[np.minimum(ks, len(c) - 1)]
    t = ((upper + lower.astype(np.float64)) / 2).astype(np.float32)
    t = np.where(t <= lower, np.nextafter(lower, np.float32(np.inf)), t)
    return np.where(ks == len(c), np.float32(0.0), t).astype(np.float64)


def _greedy(problem: SearchProblem, exits: dict[int, Exit], min_correct: int, seen: list) -> dict[int, Exit]:
    """Take the move that saves the most cost per sample of accuracy lost, until none stays feasible."""
    outcome = outcome_of(problem, _as_list(exits))
    cost, correct = outcome.mean_cost * problem.samples, round(outcome.accuracy * problem.samples)
    seen.append((cost, correct))
    points = sorted({o.point for o in problem.options})
    while True:
        best, best_score = None, None
        for point in points:
            moves = _moves_at(problem, exits, point, GREEDY_LEVELS)
            saved, lost = cost - moves.total_cost, correct - moves.total_correct
            ok = np.flatnonzero((saved > EPS) & (moves.total_correct >= min_correct))
            if len(ok) == 0:
                continue
            free = ok[lost[ok] <= 0]
            # Moves that lose nothing come first (the biggest saving); then the best saving per sample lost.
            pick = free[saved[free].argmax()] if len(free) else ok[(saved[ok] / lost[ok]).argmax()]
            score = (1, saved[pick]) if lost[pick] <= 0 else (0, saved[pick] / lost[pick])
            if best_score is None or score > best_score:
                best, best_score = (moves, int(pick)), score
        if best is None:
            return exits
        moves, pick = best
        exits = _apply(exits, moves.point, moves.exit(pick))
        cost, correct = moves.total_cost[pick], int(moves.total_correct[pick])
        seen.append((cost, correct))


def _refine(problem: SearchProblem, exits: dict[int, Exit], min_correct: int, seen: list) -> dict[int, Exit]:
    """Coordinate descent: at each point in turn, the best head and exact threshold given the others."""
    points = sorted({o.point for o in problem.options})
    for _ in range(10):
        improved = False
        for point in points:
            current = outcome_of(problem, _as_list(exits)).mean_cost * problem.samples
            moves = _moves_at(problem, exits, point, None)
            pick = moves.best_feasible(min_correct)
            if pick is not None and moves.total_cost[pick] < current - 1e-6 * max(current, 1.0):
                exits = _apply(exits, point, moves.exit(pick))
                seen.append((moves.total_cost[pick], int(moves.total_correct[pick])))
                improved = True
        if not improved:
            break
    return exits


def _refine_pairs(problem: SearchProblem, exits: dict[int, Exit], min_correct: int, seen: list) -> dict[int, Exit]:
    """Escape what one point at a time cannot: for neighbouring kept exits, every move at one (on the
    greedy grid, or removal) followed by the exact best at the other."""
    if len(exits) > PAIR_LIMIT:
        return exits
    for _ in range(5):
        current = outcome_of(problem, _as_list(exits)).mean_cost * problem.samples
        best_exits, best_cost = None, current - 1e-6 * max(current, 1.0)
        kept = sorted(exits)
        pairs = [pair for a, b in itertools.pairwise(kept) for pair in ((a, b), (b, a))]
        for first, second in pairs:
            moves = _moves_at(problem, exits, first, GREEDY_LEVELS)
            for i in range(len(moves.option)):
                trial = _apply(exits, first, moves.exit(i))
                follow = _moves_at(problem, trial, second, None)
                pick = follow.best_feasible(min_correct)
                if pick is not None and follow.total_cost[pick] < best_cost:
                    best_exits, best_cost = _apply(trial, second, follow.exit(pick)), follow.total_cost[pick]
                    seen.append((best_cost, int(follow.total_correct[pick])))
        if best_exits is None:
            return exits
        exits = _refine(problem, best_exits, min_correct, seen)
    return exits


def _apply(exits: dict[int, Exit], point: int, exit: Exit | None) -> dict[int, Exit]:
    new = {p: e for p, e in exits.items() if p != point}
    if exit is not None:
        new[point] = exit
    return new


def _as_list(exits: dict[int, Exit]) -> list[Exit]:
    return [exits[p] for p in sorted(exits)]


def _front(seen: list[tuple[float, int]], samples: int) -> list[tuple[float, float]]:
    """The non-dominated (mean cost, accuracy) pairs, cheapest first."""
    front, best_correct = [], -1
    for cost, correct in sorted(set(seen), key=lambda s: (s[0], -s[1])):
        if correct > best_correct:
            front.append((cost / samples, correct / samples))
            best_correct = correct
    return front


def synthetic_problem(samples=400, points=3, kinds=2, drop=0.02, seed=0):
    """A problem shaped like a real one, for tests and benchmarks: exits that get better with depth, heads whose
    confidence predicts their correctness, costs growing along the depth."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(samples)
    options = []
    for p in range(points):
        skill = 0.45 + 0.5 * (p + 1) / (points + 1)
        for k in range(kinds):
            correct = difficulty < skill + 0.05 * k + rng.normal(0, 0.05, samples)
            conf = np.clip(np.where(correct, 0.6, 0.35) + rng.normal(0, 0.15, samples), 0, 1).astype(np.float32)
            options.append(Option(p, f"k{k}", conf, correct, head_cost=2.0 + 3 * k))
    final_correct = difficulty < 0.97
    reach = [100.0 * (p + 1) for p in range(points)]
    return SearchProblem(options, reach, 100.0 * (points + 1), final_correct, float(final_correct.mean()) - drop)
