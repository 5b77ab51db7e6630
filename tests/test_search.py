"""The search keeps its accuracy constraint, finds what exhaustive search finds on small cases, and scales."""

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest

from eenn_tvm.search import (
    Exit,
    outcome_of,
    search,
    single_threshold,
    synthetic_problem,
)


def by_hand(problem, exits):
    """Each sample walked through the cascade one at a time, as the runtime does."""
    costs, correct = [], []
    for s in range(problem.samples):
        paid = 0.0
        for e in exits:
            option = problem.options[e.option]
            paid += option.head_cost
            if option.confidence[s] >= np.float32(e.threshold):
                costs.append(problem.reach_cost[e.point] + paid)
                correct.append(option.correct[s])
                break
        else:
            costs.append(problem.final_cost + paid)
            correct.append(problem.final_correct[s])
    return np.mean(costs), np.mean(correct)


def test_evaluate_matches_a_sample_by_sample_walk():
    problem = synthetic_problem()
    exits = [Exit(0, 1, 0.7), Exit(2, 4, 0.5)]
    outcome = outcome_of(problem, exits)
    cost, accuracy = by_hand(problem, exits)
    assert outcome.mean_cost == pytest.approx(cost)
    assert outcome.accuracy == pytest.approx(accuracy)
    assert sum(outcome.exit_counts) == problem.samples


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("drop", [0.0, 0.02, 0.08])
def test_result_keeps_the_accuracy_floor_and_saves_cost(seed, drop):
    problem = synthetic_problem(drop=drop, seed=seed)
    result = search(problem)
    assert result.outcome.accuracy >= problem.min_accuracy - 1e-12
    assert result.outcome.mean_cost <= problem.final_cost
    assert by_hand(problem, result.exits) == pytest.approx((result.outcome.mean_cost, result.outcome.accuracy))
    if drop >= 0.02:
        assert result.outcome.mean_cost < 0.8 * problem.final_cost


def test_matches_exhaustive_search_on_a_small_case():
    problem = synthetic_problem(samples=150, points=2, kinds=1, drop=0.03, seed=3)
    grid = [float(t) for t in np.unique(np.concatenate([o.confidence for o in problem.options]))] + [np.inf]
    best = problem.final_cost
    for t0, t1 in itertools.product(grid, grid):
        exits = [Exit(p, p, t) for p, t in [(0, t0), (1, t1)] if t != np.inf]
        outcome = outcome_of(problem, exits)
        if outcome.accuracy >= problem.min_accuracy - 1e-12:
            best = min(best, outcome.mean_cost)
    assert search(problem).outcome.mean_cost <= best * 1.01


def test_pareto_front_is_sorted_and_non_dominated():
    front = search(synthetic_problem(seed=1)).pareto
    costs, accuracies = zip(*front)
    assert list(costs) == sorted(costs) and list(accuracies) == sorted(accuracies)
    assert len(front) > 3


def test_single_threshold_baseline_keeps_the_floor():
    problem = synthetic_problem(seed=2)
    baseline = single_threshold(problem, [0, 2, 4])
    assert baseline.outcome.accuracy >= problem.min_accuracy - 1e-12
    assert len({e.threshold for e in baseline.exits}) <= 1


def test_a_floor_no_single_threshold_meets_is_an_infeasible_baseline_not_an_error():
    """A floor above what any single threshold keeps (few samples, a small tolerance) makes the baseline infeasible,
    with no exits, and the search still answers."""
    problem = synthetic_problem(samples=200, drop=0.005, seed=0)
    above = replace(problem, min_accuracy=float(problem.final_correct.mean()) + 0.01)
    baseline = single_threshold(above, [0, 2, 4])
    assert not baseline.feasible and baseline.exits == []
    assert baseline.outcome.accuracy == problem.final_correct.mean() and baseline.pareto
    assert search(problem).feasible


def test_fifty_candidate_points_search_in_seconds():
    """A ResNet-152 has about 50 candidate points; the search must not blow up with them."""
    problem = synthetic_problem(samples=2000, points=50, kinds=3, drop=0.01, seed=4)
    start = time.perf_counter()
    result = search(problem)
    assert time.perf_counter() - start < 120
    assert result.outcome.accuracy >= problem.min_accuracy - 1e-12
