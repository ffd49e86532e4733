"""Adaptive candidates: a request whose segment keeps being rejected samples more candidates per
round (doubling up to `max_adaptive_candidates`), back to `num_candidates` after an acceptance;
the first passing candidate in row order is accepted. A toy backend, no model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.rewards.base import CallableReward
from tests.helpers.tiny_models import build_tiny_runtime
from tests.helpers.toy_backend import ToyBackend


class ScriptedReward:
    """Round i (after the empty-response call) scores 1.0 exactly the candidates at the positions
    `passing[i]` names (all when the script has run out), 0.0 the others; records every call."""

    def __init__(self, passing: Sequence[Sequence[int]]):
        self.passing = [set(p) for p in passing]
        self.calls: list[list[str]] = []

    def __call__(self, prompts, responses):
        if responses == [""]:
            return [0.0]
        self.calls.append(list(responses))
        script = self.passing[len(self.calls) - 1] if len(self.calls) <= len(self.passing) else None
        return [1.0 if script is None or i in script else 0.0 for i in range(len(responses))]


def run(reward: ScriptedReward, **settings):
    config = StarsConfig(
        **{
            "horizon": 2,
            "max_new_tokens": 4,
            "seed": 0,
            "target_reward": 0.5,
            "alpha": 1.0,
            "acceptance": "hard",
            "max_rejections": 100,
            "target_cap_quantile": None,
            **settings,
        }
    )  # the scripts assume a fixed target
    runtime = StarsRuntime(ToyBackend(), reward=CallableReward(reward))  # type: ignore[arg-type]
    [result] = runtime.generate(["p"], config)
    assert result.finish_reason == "length", result.error
    return result


def test_rejected_rounds_double_the_candidates_up_to_the_cap_and_an_acceptance_resets_them():
    reward = ScriptedReward([[], [], [], [], [2, 5]])  # four rounds reject everything
    result = run(reward, max_adaptive_candidates=8)
    assert [len(c) for c in reward.calls] == [1, 2, 4, 8, 8, 1]
    first, second = result.segments
    # the first passing candidate in row order wins; the ones before it count as rejections
    assert first.text == reward.calls[4][2]
    assert first.rejections == 1 + 2 + 4 + 8 + 2 == result.stats.rejections
    assert second.rejections == 0 and result.text == reward.calls[5][0]  # a candidate is the whole response
    assert result.text.startswith(first.text)


@pytest.mark.parametrize("candidates", [2, 3])
def test_widening_starts_from_num_candidates(candidates):
    reward = ScriptedReward([[], [], [], [0]])
    run(reward, num_candidates=candidates, max_adaptive_candidates=8)
    assert [len(c) for c in reward.calls] == [candidates, min(2 * candidates, 8), 8, 8, candidates]


def test_widening_is_on_by_default_up_to_four_candidates():
    reward = ScriptedReward([[], [], [], [0]])
    run(reward)
    assert [len(c) for c in reward.calls] == [1, 2, 4, 4, 1]


def test_a_cap_of_num_candidates_turns_widening_off():
    reward = ScriptedReward([[], [], [], [0]])
    run(reward, num_candidates=2, max_adaptive_candidates=2)
    assert [len(c) for c in reward.calls] == [2, 2, 2, 2, 2]


def test_the_forced_best_after_max_rejections_still_counts_candidates_like_sequential_rounds():
    reward = ScriptedReward([[], [], []])  # nothing passes: after 5 rejections the best is forced
    result = run(reward, max_rejections=5, max_adaptive_candidates=8)
    assert [len(c) for c in reward.calls][:3] == [1, 2, 4]
    first = result.segments[0]
    assert first.forced and first.rejections == 5  # stopped at the 5th candidate, as 5 rounds of 1 would


def test_widened_seeded_requests_give_the_same_result_alone_and_sharing_a_batch(tmp_path):
    """The row count follows the request's own rejections only, so batching leaves results alone."""
    import threading

    runtime = build_tiny_runtime(tmp_path)
    runtime.scheduler.configure(max_batch_rows=64, max_wait=0.05)
    sizes: list[int] = []
    prompts_seen: list[int] = []

    def text_reward(prompts, responses):
        sizes.append(len(responses))
        prompts_seen.append(len(set(prompts)))
        return [(sum(map(ord, r)) % 101) / 100 for r in responses]

    base = StarsConfig(
        horizon=4, max_new_tokens=16, max_rejections=6, max_adaptive_candidates=8, target_reward=0.8, alpha=1.0
    )
    calls = [
        ("the first prompt", base.updated(seed=1, num_candidates=2)),
        ("third", base.updated(seed=9, acceptance="hard")),
        ("and a fourth one here", base.updated(seed=4, calibration_quantile=0.9)),
    ]
    expected = [runtime.generate([p], c, reward=text_reward)[0] for p, c in calls]
    assert max(sizes) > 2  # some request widened
    merged: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def call(i: int) -> None:
        barrier.wait()
        merged[i] = runtime.generate([calls[i][0]], calls[i][1], reward=text_reward)[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert max(prompts_seen) > 1  # they did share a batch
    for got, want in zip(merged, expected, strict=True):
        assert (got.token_ids, got.reward, got.stats.rejections) == (want.token_ids, want.reward, want.stats.rejections)
