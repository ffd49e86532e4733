"""The policy-backend seam: a toy backend (no model, no KV cache) runs every strategy through the
runtime and the scheduler, so nothing above the seam depends on the transformers backend."""

from __future__ import annotations

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends.protocol import PolicyBackend, PolicyBatch
from stars_plugins.errors import ConfigError
from stars_plugins.rewards.base import CallableReward
from tests.helpers.toy_backend import ToyBackend, ToyBatch


def vowels(prompts, responses):
    """Share of vowels: a reward the toy policy can be steered by."""
    return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]


@pytest.fixture
def toy() -> StarsRuntime:
    return StarsRuntime(ToyBackend(), reward=CallableReward(vowels))  # type: ignore[arg-type]


def test_the_toy_backend_satisfies_the_protocols():
    assert isinstance(ToyBackend(), PolicyBackend)
    assert isinstance(ToyBatch([], [], []), PolicyBatch)


@pytest.mark.parametrize("strategy", ["stars", "vanilla", "best_of_n"])
def test_every_strategy_runs_on_any_backend(toy, strategy):
    config = StarsConfig(
        strategy=strategy,
        horizon=4,
        max_new_tokens=12,
        num_candidates=3,
        seed=1,
        target_reward=0.3,
        alpha=1.0,
        acceptance="hard",
        max_rejections=5,
    )
    results = toy.generate(["p", "q"], config)
    for r in results:
        assert r.finish_reason == "length" and len(r.token_ids) == 12
        assert r.text == ToyBackend().decode(r.token_ids)
        assert r.reward is not None
    if strategy == "stars":  # rejections happened and accepted segments passed the threshold
        assert sum(r.stats.rejections for r in results) > 0
        assert all(s.reward >= 0.3 or s.forced for r in results for s in r.segments)


def test_stars_steers_the_toy_policy_towards_the_reward(toy):
    prompts = [f"p{i}" for i in range(8)]
    plain = toy.generate(prompts, StarsConfig(strategy="vanilla", horizon=4, max_new_tokens=16, seed=3))
    steered = toy.generate(
        prompts,
        StarsConfig(
            horizon=4, max_new_tokens=16, seed=3, target_reward=0.5, alpha=1.0, acceptance="hard", num_candidates=4
        ),
    )
    mean = lambda results: sum(r.reward for r in results) / len(results)  # noqa: E731
    assert mean(steered) > mean(plain) + 0.1


def test_a_boundary_strategy_is_refused_by_a_backend_without_boundaries(toy):
    [result] = toy.generate(["p"], StarsConfig(strategy="cards", max_new_tokens=8), raise_errors=False)
    assert result.finish_reason == "error" and isinstance(result.error, ConfigError)
    assert "does not support" in str(result.error)


def test_greedy_decoding_under_a_resampling_strategy_keeps_each_segment_without_resampling():
    """temperature 0 makes every candidate the same text: one row per request, and a rejected
    segment is kept at once (forced) instead of being resampled max_rejections times."""
    from stars_plugins import config as config_module

    config_module._warned.clear()  # the warning is once per process
    never = CallableReward(lambda prompts, responses: [-1.0] * len(responses))
    runtime = StarsRuntime(ToyBackend(), reward=never)
    greedy = dict(horizon=4, max_new_tokens=12, num_candidates=4, target_reward=0.0, acceptance="hard")
    with pytest.warns(UserWarning, match="temperature=0 decodes greedily"):
        config = StarsConfig(strategy="stars", temperature=0.0, max_rejections=20, **greedy)
    [result] = runtime.generate(["p"], config)
    stats = result.stats
    assert result.text == "a" * 12  # the toy policy's greedy letter
    assert stats.rounds == stats.segments == stats.forced_accepts == 3
    assert stats.rejections == 3 and stats.sampled_tokens == stats.accepted_tokens == 12
    [best] = runtime.generate(["p"], config.updated(strategy="best_of_n"))
    assert best.stats.sampled_tokens == 12  # one sample, not four identical ones
