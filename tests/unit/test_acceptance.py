"""The acceptance rule as pure functions, including its probability law."""

from __future__ import annotations

import math
import random

import pytest

from stars_plugins.acceptance import (
    acceptance_probability,
    accepts,
    calibrated_target,
    initial_threshold,
    quantile,
    threshold_at,
)


def test_initial_threshold_interpolates_between_empty_reward_and_target():
    assert initial_threshold(-1.0, 1.0, 0.5) == pytest.approx(0.0)
    assert initial_threshold(-1.0, 1.0, 0.0) == pytest.approx(-1.0)
    assert initial_threshold(-1.0, 1.0, 1.0) == pytest.approx(1.0)


def test_threshold_rises_linearly_and_caps_at_target():
    r0, target, budget = 0.0, 1.0, 100
    assert threshold_at(0, r0, target, budget) == pytest.approx(0.0)
    assert threshold_at(50, r0, target, budget) == pytest.approx(0.5)
    assert threshold_at(100, r0, target, budget) == pytest.approx(1.0)
    assert threshold_at(150, r0, target, budget) == pytest.approx(1.0)


def test_threshold_never_exceeds_target_when_start_is_above_it():
    assert threshold_at(0, 2.0, 1.0, 10) == pytest.approx(1.0)


@pytest.mark.parametrize("reward", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_rewards_are_never_accepted(reward):
    assert acceptance_probability(reward, 0.0, 0.7) == 0.0
    assert not accepts(reward, -100.0, mode="soft", beta=0.7, uniform=0.0)
    assert not accepts(reward, -100.0, mode="hard", beta=0.7, uniform=0.0)


def test_hard_mode_is_a_plain_comparison():
    assert accepts(0.5, 0.5, mode="hard", beta=0.7, uniform=0.99)
    assert not accepts(0.49, 0.5, mode="hard", beta=0.7, uniform=0.0)


def test_soft_probability_formula():
    assert acceptance_probability(1.0, 0.5, 0.7) == 1.0
    assert acceptance_probability(0.0, 0.7, 0.7) == pytest.approx(math.exp(-1.0))


@pytest.mark.parametrize(
    ("reward", "threshold", "beta"),
    [(0.0, 0.5, 0.7), (-1.0, 0.0, 0.7), (0.2, 0.3, 0.1), (1.0, 0.0, 0.7), (0.3, 0.3, 2.0)],
)
def test_soft_acceptance_happens_with_probability_min_1_exp(reward, threshold, beta):
    rng = random.Random(1234)
    trials = 20_000
    hits = sum(accepts(reward, threshold, mode="soft", beta=beta, uniform=rng.random()) for _ in range(trials))
    p = min(1.0, math.exp((reward - threshold) / beta))
    sigma = math.sqrt(max(p * (1 - p), 1e-12) / trials)
    assert abs(hits / trials - p) <= 5 * sigma + 1e-9


def test_calibrated_target_is_a_quantile_of_finite_rewards():
    assert calibrated_target([0.0, 1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.0)
    assert calibrated_target([0.0, 1.0, float("nan"), 2.0], 1.0) == pytest.approx(2.0)
    assert calibrated_target([0.0, 10.0], 0.75) == pytest.approx(7.5)
    assert calibrated_target([float("nan")], 0.5) is None


def test_quantile_interpolates_between_ranks_in_any_input_order():
    assert quantile([4.0, 0.0, 2.0, 1.0, 3.0], 0.5) == pytest.approx(2.0)
    assert quantile([10.0, 0.0], 0.75) == pytest.approx(7.5)
    assert quantile([5.0], 0.3) == 5.0
    assert quantile([3.0, 1.0, 2.0], 0.0) == 1.0 and quantile([3.0, 1.0, 2.0], 1.0) == 3.0
    with pytest.raises(ValueError):
        quantile([], 0.5)
