"""The tolerance as a finite-sample guarantee: thresholds chosen by Learn-then-Test (Angelopoulos et al., 2021).

The statement: if new samples are drawn from the same distribution as the calibration split (exchangeable with it),
the accuracy drop of the early-exit network against the original model on them, in expectation, exceeds the
tolerance with probability at most 1 - confidence over the draw of the calibration split.

How: the calibration split is cut in two (by group when the samples carry groups; the sizes: TEST_SHARE). On the
first part, the search proposes a cascade (exits, heads, thresholds) within the tolerance there, and a path leads to
it from the most cautious: the same exits with raised thresholds, each letting out a growing share of the samples the
proposal lets out, up to all of them. The path is fixed before the second part is looked at. On the second part, each
cascade along the path is tested against H0 "its drop exceeds the tolerance" at level 1 - confidence, stopping at the
first that is not rejected (fixed-sequence testing: the family-wise error stays at 1 - confidence without a
Bonferroni split). Every rejected cascade keeps the tolerance, with that probability, all at once; the cheapest of
them on the whole split is chosen. None rejected: no exit. (A sequence of proposals at growing floors would start
with cascades that lose nothing on the first part but churn many answers, which the test cannot clear: the path
starts safe.)

The test (per cascade): a sample's loss is +1 when the original model is right and the cascade wrong, -1 for the
reverse, 0 when they agree in correctness; the drop is its mean, p+ - p-. Given the k samples that disagree, the
harmed ones are binomial(k, q) with q = p+ / (p+ + p-), and the drop exceeds the tolerance t only if q > (1 + t/d)/2
where d = p+ + p- is the disagreement rate. With d bounded above by an exact (Clopper-Pearson) bound at level
NUISANCE_SHARE of the error, that is one exact binomial tail (Berger and Boos' p-value for a nuisance parameter).
Unlike a bound on harms alone it credits the samples an exit gets right that the original got wrong; the harms alone
(an exact binomial test of their rate, which bounds the drop) prove more when the samples are few (below about
ln(1 / NUISANCE_SHARE / error) / tolerance, the first test cannot certify anything) or disagreements rare. Which of
the two tests the path is tested with is decided on the first part.

With groups (speakers, patients, streams) the samples are not independent: the counts are divided by the design
effect (the cluster-robust variance of the loss over the independent one), which makes the test an approximation
there, not exact; exact would need many groups (tens of groups cannot certify a 1-point tolerance distribution-free).
Windows of a stream come in runs of alike windows, and the loss's own design effect cannot show that when its events
are few: a cascade that harmed none of a stream's windows looks like a hundred independent successes where there were
five runs. So on streams (`serial`) the design effect is at least that of the original model's own errors, which are
many and run the way the data do. In simulated streams (14 streams of 117 windows in runs of 20) the harms-alone test
at the boundary of the null rejected 46 % of the time on the loss's design effect, at most 10 % with the floor
(tests/test_guarantee.py). Groups of separate recordings (speakers, patients) have no runs, and there the floor,
driven by how unequal the groups are in the original's errors, cost 9 points of saving on keyword spotting: it is not
applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import betainc, betaincinv

from eenn_tvm.search import Exit, Result, SearchProblem, correct_of, outcome_of

# The calibration split's parts: the first proposes the cascade, the second tests the path to it. The test's margin
# shrinks with the square root of its samples, and on a small split it is what limits the saving; on a large one the
# proposal's own noise does. So the test gets TEST_SHARE of the split until that holds TEST_SAMPLES, and half beyond.
# bench/guarantee.py, 20 re-splits: keyword spotting (2,514 samples) saved 69.5 % on average with a 70 % test part,
# 67.9 % with half; ECG (2,000) 42.6 % against 43.1 %, the same within the noise, fewer re-splits over the tolerance.
# 80 % left ECG's proposal too noisy (10 re-splits: 39.8 % against 43.6 %); with 12,000 samples (Fashion ResNet-20)
# 75 % was no better than half.
TEST_SHARE = 0.7
TEST_SAMPLES = 6000
PATH_STEPS = 50  # cascades on the path from the most cautious to the proposal
NUISANCE_SHARE = 0.1  # of the error level spent on the upper bound of the disagreement rate
SPLIT_SEED = 0


@dataclass
class Certified:
    """The chosen cascade and what the test said about the sequence."""

    result: Result  # outcome on the whole calibration split
    p_value: float  # of the chosen cascade (1.0: no exit, nothing to test)
    tested: int  # cascades tested before the sequence stopped
    passed: int  # of those, rejected H0 (they keep the tolerance)
    proposed: list[Exit]  # the first part's proposal, whose path was tested: it depends on that part alone


def learn_then_test(solve: Callable[[SearchProblem], Result], problem: SearchProblem, confidence: float) -> Certified:
    """The cheapest cascade on the path to `solve`'s proposal whose drop against the original model passes the test
    at level 1 - confidence. The tolerance is the problem's: the original model's accuracy minus its floor."""
    tolerance = max(float(problem.final_correct.mean()) - problem.min_accuracy, 0.0)
    error = 1.0 - confidence
    selection, testing = _split(problem)
    proposed = solve(replace(selection, min_accuracy=float(selection.final_correct.mean()) - tolerance))
    path = _path(selection, proposed.exits)
    # Which test goes further is decided on the selection part, so the choice is fixed before the testing part.
    credit_helps = _reach(selection, path, tolerance, error, True) >= _reach(selection, path, tolerance, error, False)
    chosen, chosen_p, tested, passed = [], 1.0, 0, 0
    best_cost = outcome_of(problem, []).mean_cost
    for exits in path:
        tested += 1
        p = _p_value(testing, exits, tolerance, error, credit_helps)
        if p > error:
            break
        passed += 1
        cost = outcome_of(problem, exits).mean_cost
        if cost < best_cost:
            chosen, chosen_p, best_cost = exits, p, cost
    # The front is the proposal's, traced on the selection part: the report's picture of the trade-off.
    result = Result(chosen, outcome_of(problem, chosen), proposed.pareto)
    return Certified(result, chosen_p, tested, passed, proposed.exits)


def _reach(part: SearchProblem, path: list[list[Exit]], tolerance: float, error: float, credit_helps: bool) -> int:
    """How many cascades of the path the test passes in a row on `part`."""
    for i, exits in enumerate(path):
        if _p_value(part, exits, tolerance, error, credit_helps) > error:
            return i
    return len(path)


def _p_value(part: SearchProblem, exits: list[Exit], tolerance: float, error: float, credit_helps: bool) -> float:
    correct = correct_of(part, exits)
    return drop_p_value(part.final_correct, correct, tolerance, error, part.groups, credit_helps, part.serial)


def _path(selection: SearchProblem, proposal: list[Exit]) -> list[list[Exit]]:
    """Cascades from the most cautious to the proposal: at step s of PATH_STEPS, each exit lets out the share s of
    the selection samples the proposal lets out there (its threshold raised to match); exits that let none out are
    left out, so their heads cost nothing."""
    path = []
    for share in np.linspace(0.0, 1.0, PATH_STEPS + 1)[1:]:
        exits = []
        for e in proposal:
            ranked = np.sort(selection.options[e.option].confidence)[::-1]
            leaving = int(np.count_nonzero(ranked >= np.float32(e.threshold)))
            k = int(np.floor(share * leaving + 1e-9))
            if k > 0:
                exits.append(replace(e, threshold=e.threshold if k == leaving else float(ranked[k - 1])))
        if exits and (not path or exits != path[-1]):
            path.append(exits)
    return path


def drop_p_value(
    reference_correct: np.ndarray,
    correct: np.ndarray,
    tolerance: float,
    error: float,
    groups: np.ndarray | None = None,
    credit_helps: bool = True,
    serial: bool = False,
) -> float:
    """A valid p-value for H0 "the expected drop, reference accuracy minus this accuracy, exceeds `tolerance`" from
    paired per-sample correctness (exact for independent samples; see the module's docstring), for a test at level
    `error` (a share of which bounds the disagreement rate). Without `credit_helps`, the harms alone are tested
    (their rate bounds the drop): stronger when the samples or the disagreements are few. `serial`: the groups are
    streams of consecutive windows (see the module's docstring)."""
    reference_correct, correct = np.asarray(reference_correct, bool), np.asarray(correct, bool)
    harmed = float(np.sum(reference_correct & ~correct))
    disagree = harmed + float(np.sum(~reference_correct & correct))
    n = float(len(correct))
    if groups is not None:
        effect = _design_effect(reference_correct.astype(float) - correct, groups)
        if serial:
            effect = max(effect, _design_effect(reference_correct.astype(float), groups))
        shrink = 1.0 / effect
        harmed, disagree, n = harmed * shrink, disagree * shrink, n * shrink
    if not credit_helps:
        return _binomial_cdf(harmed, n, tolerance)
    nuisance = NUISANCE_SHARE * error
    rate_bound = 1.0 if disagree >= n else float(betaincinv(disagree + 1, n - disagree, 1 - nuisance))
    if rate_bound <= tolerance:  # even if every disagreement were a harm, the drop would be within tolerance
        return nuisance
    q0 = (1.0 + tolerance / rate_bound) / 2
    return min(1.0, nuisance + _binomial_cdf(harmed, disagree, q0))


def _binomial_cdf(x: float, n: float, p: float) -> float:
    """P(Binomial(n, p) <= x), continuous in n and x (counts shrunk by a design effect need not be whole)."""
    if x >= n:
        return 1.0
    return float(betainc(n - x, x + 1, 1 - p))


def _design_effect(loss: np.ndarray, groups: np.ndarray) -> float:
    """The cluster-robust variance of the mean loss over the independent one (at least 1)."""
    n = len(loss)
    independent = float(np.var(loss, ddof=1)) / n if n > 1 else 0.0
    if independent == 0.0:
        return 1.0
    _, member = np.unique(groups, return_inverse=True)
    sums = np.bincount(member, weights=loss - loss.mean())
    g = len(sums)
    clustered = g / max(g - 1, 1) * float(np.square(sums).sum()) / n**2
    return max(1.0, clustered / independent)


def in_selection(units: np.ndarray) -> np.ndarray:
    """Per sample, whether it falls in the part that proposes (the rest tests), whole units (samples, groups or
    streams; `units` names each sample's) to one side, the sizes as TEST_SHARE says."""
    names = np.unique(units)
    share = 1.0 - max(0.5, min(TEST_SHARE, TEST_SAMPLES / max(len(units), 1)))
    chosen = np.random.default_rng(SPLIT_SEED).permutation(names)[: max(1, round(share * len(names)))]
    return np.isin(units, chosen)


def _split(problem: SearchProblem) -> tuple[SearchProblem, SearchProblem]:
    """(selection, testing) parts of the calibration split, whole groups to one side when there are groups."""
    selected = in_selection(np.arange(problem.samples) if problem.groups is None else problem.groups)
    return problem.subset(np.flatnonzero(selected)), problem.subset(np.flatnonzero(~selected))
