"""A STARS request's first segment decodes while the reward scores its prompt (R(prompt, "")), and
its first verdict still sees that score: the reward's worker runs the calls in order."""

from __future__ import annotations

import threading

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.rewards.base import CallableReward
from tests.helpers.toy_backend import ToyBackend, ToyBatch


def test_the_first_segment_decodes_while_the_prompt_is_scored(monkeypatch):
    decoded = threading.Event()
    advance = ToyBatch.advance

    def advance_and_tell(self, steps):
        done = advance(self, steps)
        decoded.set()
        return done

    monkeypatch.setattr(ToyBatch, "advance", advance_and_tell)
    calls: list[tuple[str, bool]] = []

    def reward(prompts, responses):
        if all(r == "" for r in responses):  # the judge's start: R(prompt, "")
            calls.append(("start", decoded.wait(timeout=10)))  # rows decode meanwhile
            return [0.0] * len(responses)
        calls.append(("decide", decoded.is_set()))
        return [1.0] * len(responses)

    runtime = StarsRuntime(ToyBackend(), reward=CallableReward(reward))  # type: ignore[arg-type]
    config = StarsConfig(horizon=4, max_new_tokens=8, num_candidates=2, seed=0, target_reward=0.5, acceptance="hard")
    result = runtime.generate(["p"], config)[0]
    assert calls[0] == ("start", True), calls  # the prompt's score waited for a decode step, not the other way
    assert [kind for kind, _ in calls[1:]] == ["decide", "decide"]
    assert result.finish_reason == "length" and len(result.token_ids) == 8
    assert result.stats.rejections == 0  # 1.0 passes the threshold calibrated from the start score


def test_a_prompt_the_reward_cannot_score_fails_that_request_while_its_rows_decode():
    def reward(prompts, responses):
        if any("bad" in p and r == "" for p, r in zip(prompts, responses, strict=True)):
            raise ValueError("cannot score this prompt")
        return [1.0] * len(responses)

    runtime = StarsRuntime(ToyBackend(), reward=CallableReward(reward))  # type: ignore[arg-type]
    config = StarsConfig(horizon=4, max_new_tokens=12, num_candidates=2, seed=0, target_reward=0.5, acceptance="hard")
    good, bad = runtime.generate(["good", "bad"], config, raise_errors=False)
    assert good.finish_reason == "length" and len(good.token_ids) == 12
    assert bad.finish_reason == "error" and "cannot score this prompt" in str(bad.error)
    again = runtime.generate(["good"], config)[0]  # the engine goes on
    assert again.token_ids == good.token_ids
