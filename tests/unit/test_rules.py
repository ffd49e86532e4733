"""Segment rules on synthetic logits: no model needed."""

from __future__ import annotations

import math

import torch

from stars_plugins import StarsConfig
from stars_plugins.backends.sampling import entropy
from stars_plugins.decoding.rules import EntropyBoundary, FixedHorizon, WholeResponse, entropy_boundary


def test_fixed_horizon_runs_k_tokens_without_a_boundary():
    config = StarsConfig(horizon=7)
    rule = FixedHorizon()
    assert rule.budget(config) == 7 and rule.boundary(config) is None
    assert rule.key(config) != rule.key(config.updated(horizon=8))
    assert rule.key(config) == rule.key(config.updated(alpha=0.1))  # other settings can share a batch


def test_whole_response_runs_the_whole_budget():
    config = StarsConfig(max_new_tokens=40)
    assert WholeResponse().budget(config) == 40 and WholeResponse().boundary(config) is None


def test_entropy_boundary_ends_uncertain_rows_after_the_shortest_length():
    vocab = 32
    uniform = torch.zeros(vocab)  # entropy log(32) = 3.47 nats
    peaked = torch.full((vocab,), -20.0)
    peaked[3] = 20.0  # entropy about 0
    logits = torch.stack([uniform, peaked, uniform])
    assert math.isclose(float(entropy(uniform[None])[0]), math.log(vocab), rel_tol=1e-5)
    ends = entropy_boundary(threshold=3.0, shortest=4)
    assert ends(logits, torch.tensor([4, 4, 3])).tolist() == [True, False, False]
    assert ends(logits, torch.tensor([9, 9, 9])).tolist() == [True, False, True]


def test_entropy_rule_reads_its_settings_from_the_config():
    config = StarsConfig(strategy="cards", entropy_threshold=1.0, min_segment_tokens=2, max_segment_tokens=9)
    rule = EntropyBoundary()
    assert rule.budget(config) == 9
    boundary = rule.boundary(config)
    assert boundary is not None
    logits = torch.zeros((1, 8))  # entropy log(8) = 2.08 >= 1.0
    assert boundary(logits, torch.tensor([1])).tolist() == [False]
    assert boundary(logits, torch.tensor([2])).tolist() == [True]
    assert rule.key(config) != rule.key(config.updated(entropy_threshold=2.0))
