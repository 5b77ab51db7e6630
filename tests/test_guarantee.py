"""The tolerance is a guarantee: over many draws of the calibration split, the cascade chosen loses more than the
tolerance against the original model (on the whole population) in at most 1 - confidence of them."""

from dataclasses import replace

import numpy as np
import pytest

from eenn_tvm.data import load_split
from eenn_tvm.guarantee import drop_p_value, learn_then_test
from eenn_tvm.search import SearchProblem, outcome_of, search, synthetic_problem

TOLERANCE = 0.02


def calibration_draw(population: SearchProblem, samples: int, seed: int, tolerance: float) -> SearchProblem:
    """An exchangeable calibration split: `samples` drawn from the population, the floor set on them."""
    drawn = population.subset(np.random.default_rng(seed).choice(population.samples, samples, replace=False))
    return replace(drawn, min_accuracy=drawn.final_correct.mean() - tolerance)


def population_drop(population: SearchProblem, exits) -> float:
    return float(population.final_correct.mean()) - outcome_of(population, exits).accuracy


def test_the_drop_exceeds_the_tolerance_in_at_most_one_minus_confidence_of_the_calibration_draws():
    """A population of 100k samples is the known distribution; 60 calibration splits of 1,500 are drawn from it. The
    thresholds chosen by Learn-then-Test at confidence 0.9 exceed the tolerance on the population in at most 10 %
    of the draws (plus binomial slack), where the plain floor on the calibration split exceeds it in most."""
    population = synthetic_problem(samples=100_000, points=1, kinds=1, drop=TOLERANCE, seed=11)
    draws = 60
    guaranteed, plain = 0, 0
    for seed in range(draws):
        calibration = calibration_draw(population, 1500, seed, TOLERANCE)
        guaranteed += population_drop(population, learn_then_test(search, calibration, 0.9).result.exits) > TOLERANCE
        plain += population_drop(population, search(calibration).exits) > TOLERANCE
    assert guaranteed <= 0.1 * draws + 4
    assert plain > 0.3 * draws  # the draws are hard enough for the guarantee to matter


@pytest.mark.parametrize("credit_helps", [True, False])
@pytest.mark.parametrize("harm, help", [(0.03, 0.01), (0.02, 0.0)])
def test_the_p_value_is_valid_at_the_boundary_of_the_null(harm, help, credit_helps):
    """Drops exactly at the tolerance (harms minus helps = 2 %): the test rejects in at most its level of the draws,
    with the helps credited and with the harms alone."""
    rng = np.random.default_rng(3)
    rejected = 0
    for _ in range(400):
        u = rng.random(2000)
        reference = u >= help  # the cascade is right where the original is wrong
        cascade = (u < help) | (u >= help + harm)  # and wrong where it is right
        rejected += drop_p_value(reference, cascade, 0.02, 0.1, credit_helps=credit_helps) <= 0.1
    assert rejected <= 0.1 * 400 + 12


def test_a_tolerance_of_zero_keeps_no_exit():
    """With no accuracy to lose, no exit that is less accurate than the backbone can be shown to keep it."""
    problem = synthetic_problem(samples=1500, points=4, kinds=2, drop=0.0, seed=5)
    certified = learn_then_test(search, problem, 0.9)
    assert certified.result.exits == [] and certified.passed == 0
    assert certified.result.outcome.accuracy == problem.final_correct.mean()


def test_exits_as_accurate_as_the_backbone_on_their_samples_are_kept_and_save():
    """Exits that are right wherever they are confident pass the test and cut the cost."""
    problem = synthetic_problem(samples=3000, points=3, kinds=1, drop=0.01, seed=2)
    confident = problem.options[0].confidence >= np.quantile(problem.options[0].confidence, 0.5)
    problem.options[0].correct[confident] = problem.final_correct[confident]
    certified = learn_then_test(search, problem, 0.9)
    assert certified.result.exits and certified.p_value <= 0.1
    assert certified.result.outcome.mean_cost < 0.8 * problem.final_cost


def test_harms_clustered_in_groups_weigh_less_as_evidence():
    """Samples of one speaker are alike: when the harms come by whole groups, the same counts prove less."""
    reference = np.ones(3000, bool)
    cascade = np.ones(3000, bool)
    cascade[:30] = False  # 1 % harmed
    scattered = np.arange(3000) % 60
    clustered = np.arange(3000) // 50  # the harms are all in group 0
    independent = drop_p_value(reference, cascade, 0.02, 0.1)
    assert drop_p_value(reference, cascade, 0.02, 0.1, scattered) == independent
    assert drop_p_value(reference, cascade, 0.02, 0.1, clustered) > independent


def stream_draw(rng, streams=14, windows=117, run=20, harm=0.01, error=0.08):
    """Windows of streams that come in runs of `run` alike windows: the original model's errors and the cascade's
    harms (`harm` of the windows, the drop) both follow the runs, as they do on recordings cut into windows."""
    runs = -(-windows // run)

    def in_runs():
        return np.repeat(rng.random((streams, runs)), run, axis=1)[:, :windows].ravel()

    reference = in_runs() >= error
    harmed = reference & (in_runs() < harm / (1 - error))
    return reference, reference & ~harmed, np.repeat(np.arange(streams), windows)


def test_on_streams_whose_windows_run_alike_the_p_value_stays_valid_where_the_losses_alone_cannot_show_it():
    """Drops exactly at the tolerance, harms in runs of 20 windows over 14 streams: most draws see a harm in one run or
    none, which the losses' own design effect reads as many independent windows. Floored by the original model's
    errors (serial), the test rejects in at most its level of the draws; on the losses alone, far more often."""
    rng = np.random.default_rng(4)
    draws = [stream_draw(rng) for _ in range(300)]
    for credit_helps in (False, True):
        serial = [drop_p_value(r, c, 0.01, 0.1, g, credit_helps, serial=True) <= 0.1 for r, c, g in draws]
        assert sum(serial) <= 0.1 * len(draws) + 9
    naive = [drop_p_value(r, c, 0.01, 0.1, g, credit_helps=False) <= 0.1 for r, c, g in draws]
    assert sum(naive) > 0.3 * len(draws)


def test_with_groups_the_thresholds_are_set_on_groups_the_heads_never_saw(tmp_path):
    """A speaker's samples go either to the heads or to the thresholds, never both: new data comes from new speakers."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 2000)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.random((2000, 3), np.float32), y=np.arange(2000) % 4, groups=groups)
    _, train, validation = load_split(path, (3,), 4, 0.2, seed=1)
    assert not set(groups[train]) & set(groups[validation])
    assert 0.2 <= len(validation) / 2000 < 0.3
