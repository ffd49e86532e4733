"""Judges on synthetic candidates and rewards: no model needed."""

from __future__ import annotations

import math
import random

import pytest

from stars_plugins import StarsConfig
from stars_plugins.decoding.judges import FinalScoreJudge, NoJudge, ThresholdJudge, ThresholdState
from stars_plugins.decoding.scoring import DecodeContext, release
from stars_plugins.decoding.state import Candidate, RequestState
from stars_plugins.errors import RewardError
from stars_plugins.prompts import PreparedPrompt
from stars_plugins.rewards.base import CallableReward


def request(prompt: str = "p", **settings) -> RequestState:
    config = StarsConfig(seed=0, **settings)
    return RequestState.create(PreparedPrompt(0, prompt, (1, 2), prompt), config, "test", rows=config.num_candidates)


def ctx(fn, default_target=None) -> DecodeContext:
    return DecodeContext(policy=None, reward=CallableReward(fn, name="fake", default_target=default_target))  # type: ignore[arg-type]


def by_text(table: dict[str, float]):
    def score(prompts, responses):
        return [table.get(r, 0.0) for r in responses]

    return score


def cands(*texts: str, finish=None) -> list[Candidate]:
    return [Candidate([i], t, finish, sampled=3, row=i) for i, t in enumerate(texts)]


def test_no_judge_accepts_the_first_candidate_and_scores_nothing():
    calls = []
    r = request()
    [d] = NoJudge().decide(ctx(lambda p, s: calls.append(s) or [0.0] * len(s)), [(r, cands("a", "b"))])
    assert d.candidate is not None and d.candidate.text == "a" and not calls


def test_final_score_judge_scores_only_finished_responses():
    seen = []

    def score(prompts, responses):
        seen.append(list(responses))
        return [2.5] * len(responses)

    going, ending = request(), request()
    items = [(going, cands("so far")), (ending, cands("the end", finish="eos"))]
    decisions = FinalScoreJudge().decide(ctx(score), items)
    assert seen == [["the end"]]
    assert decisions[1].candidate is not None and decisions[1].candidate.reward == 2.5
    assert math.isnan(decisions[0].candidate.reward)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "broken", [lambda p, s: [float("nan")] * len(s), lambda p, s: [None] * len(s), lambda p, s: 1 / 0]
)
def test_final_score_judge_fails_the_request_when_the_reward_is_unusable(broken):
    r = request()
    FinalScoreJudge().decide(ctx(broken), [(r, cands("the end", finish="length"))])
    assert r.finish_reason == "error" and isinstance(r.error, RewardError)


def test_threshold_judge_starts_from_the_empty_reward_and_the_configured_target():
    r = request(target_reward=2.0, alpha=0.5, max_new_tokens=10)
    ThresholdJudge().start(ctx(by_text({"": -2.0})), [r])
    state = r.judge_state
    assert isinstance(state, ThresholdState)
    assert (state.empty_reward, state.target, state.r0) == (-2.0, 2.0, 0.0)
    assert state.threshold(5, 10) == pytest.approx(1.0)


def test_threshold_judge_takes_the_reward_models_default_target():
    r = request()
    ThresholdJudge().start(ctx(by_text({}), default_target=0.7), [r])
    assert r.judge_state.target == 0.7


def test_first_candidate_above_the_threshold_wins_in_index_order():
    judge, c = ThresholdJudge(), ctx(by_text({"low": -1.0, "good": 1.0, "better": 2.0}))
    r = request(target_reward=0.5, alpha=1.0, acceptance="hard", num_candidates=3)
    judge.start(c, [r])
    [d] = judge.decide(c, [(r, cands("low", "good", "better"))])
    assert d.candidate is not None and d.candidate.text == "good" and d.threshold == 0.5
    assert d.rejections == 1 and r.stats.rejections == 1


def test_after_max_rejections_the_best_candidate_seen_is_forced():
    judge, c = ThresholdJudge(), ctx(by_text({"a": -3.0, "b": -1.0, "c": -2.0}))
    r = request(target_reward=5.0, alpha=1.0, acceptance="hard", max_rejections=3, num_candidates=3)
    judge.start(c, [r])
    [d] = judge.decide(c, [(r, cands("a", "b", "c"))])
    assert d.candidate is not None and d.candidate.text == "b" and d.forced and d.rejections == 3
    assert r.judge_state.rejections == 0 and r.judge_state.best is None  # reset for the next segment


def test_a_best_candidate_from_an_earlier_round_is_replayed():
    judge, c = ThresholdJudge(), ctx(by_text({"first": -1.0, "second": -2.0}))
    r = request(target_reward=5.0, alpha=1.0, acceptance="hard", max_rejections=2)
    judge.start(c, [r])
    first = cands("first")
    assert judge.decide(c, [(r, first)])[0].candidate is None
    first[0].row = -1  # the round is over
    assert judge.decide(c, [(r, cands("second"))])[0].candidate is None
    assert judge.forced_tokens(r) == first[0].token_ids
    [d] = judge.decide(c, [(r, [])])  # the replay round
    assert d.candidate is first[0] and d.forced and d.rejections == 2
    assert judge.forced_tokens(r) is None


def test_calibration_is_per_request_whatever_shares_the_round():
    """Each request's target is its own quantile of its own first-round rewards."""
    rewards = {"a0": 0.0, "a1": 1.0, "a2": 2.0, "b0": 10.0, "b1": 20.0}
    judge, c = ThresholdJudge(), ctx(by_text(rewards))
    low = request("x", calibration_quantile=0.0, num_candidates=3, acceptance="hard")
    high = request("y", calibration_quantile=1.0, num_candidates=2, acceptance="hard")
    judge.start(c, [low, high])
    judge.decide(c, [(low, cands("a0", "a1", "a2")), (high, cands("b0", "b1"))])
    assert low.judge_state.target == 0.0 and high.judge_state.target == 20.0

    alone = request("x", calibration_quantile=0.0, num_candidates=3, acceptance="hard")
    judge.start(c, [alone])
    judge.decide(c, [(alone, cands("a0", "a1", "a2"))])
    assert alone.judge_state.target == low.judge_state.target


def test_no_finite_first_round_reward_fails_only_that_request():
    judge, c = ThresholdJudge(), ctx(by_text({"bad": float("nan"), "ok": 1.0}))
    broken, fine = request("x"), request("y")
    judge.start(c, [broken, fine])
    judge.decide(c, [(broken, cands("bad")), (fine, cands("ok"))])
    assert broken.finish_reason == "error" and isinstance(broken.error, RewardError)
    assert fine.finish_reason is None and fine.judge_state.target == 1.0


def test_a_reward_that_raises_for_one_request_fails_that_request_only():
    def picky(prompts, responses):
        if "poison" in responses:
            raise ValueError("cannot score poison")
        return [1.0] * len(responses)

    judge, c = ThresholdJudge(), ctx(picky)
    bad, good = request("x", target_reward=0.0), request("y", target_reward=0.0)
    judge.start(c, [bad, good])
    decisions = judge.decide(c, [(bad, cands("poison")), (good, cands("fine"))])
    assert bad.finish_reason == "error" and "cannot score poison" in str(bad.error)
    assert decisions[1].candidate is not None and good.finish_reason is None


class KeyedReward:
    name = "keyed"
    default_target = 0.0

    def __init__(self):
        self.keys: list[list] = []
        self.released: list = []

    def score(self, prompts, responses):
        raise AssertionError("score_keyed must be preferred")

    def score_keyed(self, keys, prompts, responses):
        self.keys.append(list(keys))
        return [1.0] * len(responses)

    def release(self, keys):
        self.released.extend(keys)


def test_keyed_rewards_get_one_stable_key_per_request_and_a_release():
    reward = KeyedReward()
    c = DecodeContext(policy=None, reward=reward)  # type: ignore[arg-type]
    judge = ThresholdJudge()
    one, two = request("x", num_candidates=2), request("y")
    judge.start(c, [one, two])
    judge.decide(c, [(one, cands("a", "b")), (two, cands("c"))])
    assert reward.keys[0] == [one.key, two.key]
    assert reward.keys[1] == [one.key, one.key, two.key] and one.key != two.key
    release(c, [one, two])
    assert reward.released == [one.key, two.key]


def test_the_target_is_capped_at_what_the_requests_own_candidates_reach():
    state = ThresholdState(rng=random.Random(0), empty_reward=0.0, cap_quantile=0.5)
    state.calibrate(4.0, alpha=0.5)
    assert state.effective_target() == 4.0  # nothing seen yet
    state.seen.extend([1.0, 2.0, 3.0])
    assert state.effective_target() == 2.0
    assert state.threshold(0, 10) == pytest.approx(1.0)  # r0 = 0.5 * 0 + 0.5 * 2
    assert state.threshold(10, 10) == pytest.approx(2.0)
    state.seen.extend([9.0] * 4)
    assert state.effective_target() == 4.0  # never above the target


@pytest.mark.parametrize(("cap", "accepted_in_round", "forced"), [(None, 20, True), (0.9, 2, False)])
def test_a_prompt_whose_answers_all_score_low_is_not_resampled_up_to_max_rejections(cap, accepted_in_round, forced):
    """Every candidate scores 1.0 against a target of 5.0: a fixed target rejects until
    max_rejections and forces; the capped one accepts once the request's own level is known."""
    judge, c = ThresholdJudge(), ctx(lambda p, s: [1.0] * len(s))
    r = request(target_reward=5.0, acceptance="hard", max_rejections=20, target_cap_quantile=cap)
    judge.start(c, [r])
    decisions = []
    while not decisions or decisions[-1].candidate is None:
        decisions += judge.decide(c, [(r, cands("x"))])
    assert (len(decisions), decisions[-1].forced) == (accepted_in_round, forced)
