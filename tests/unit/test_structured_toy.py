"""Structured output through the whole decoding loop on the toy backend (no model): every
strategy keeps a constrained request inside its grammar, both where the backend masks tokens and
where it cannot (the validity judge rejects candidates at segment boundaries); rejected segments
roll the grammar back; a seeded constrained request is batch independent."""

from __future__ import annotations

import re
import threading

import pytest
import xgrammar

from stars_plugins import Constraint, ConstraintError, StarsConfig, StarsRuntime
from stars_plugins.constraints import ConstraintCompiler
from stars_plugins.rewards.base import CallableReward
from tests.helpers.toy_backend import EOS, ToyBackend, ToyBatch

LETTERS = [chr(97 + i) for i in range(26)]


class MaskingToy(ToyBackend):
    """The toy policy with a grammar compiler over its letters: the sampler masks constrained rows."""

    supports_constraints = True

    def __init__(self):
        info = xgrammar.TokenizerInfo([*LETTERS, "<eos>"], stop_token_ids=[EOS])
        self.constraint_compiler = ConstraintCompiler.from_tokenizer_info(info)

    def compile_constraint(self, constraint):
        return self.constraint_compiler.compile(constraint)


class CheckingToy(MaskingToy):
    """The same vocabulary, but no masking: constraints are judged at segment boundaries only."""

    supports_constraints = False


def vowels(prompts, responses):
    return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]


def never(prompts, responses):
    return [-1.0] * len(responses)


def config(strategy: str, constraint: Constraint, **changes) -> StarsConfig:
    settings = {"horizon": 3, "max_new_tokens": 9, "seed": 5, "constraint": constraint}
    if strategy in ("stars", "best_of_n"):
        settings["num_candidates"] = 3
    if strategy == "stars":
        settings.update(target_reward=0.3, acceptance="hard")
    return StarsConfig(strategy=strategy, **{**settings, **changes})


# Masking forces any grammar; a checking backend needs one its random letters often fit.
@pytest.mark.parametrize(("backend", "pattern"), [(MaskingToy, "(ab|cd|e)+"), (CheckingToy, "[a-p]+")])
@pytest.mark.parametrize("strategy", ["stars", "vanilla", "best_of_n"])
def test_every_strategy_keeps_the_output_in_its_grammar(backend, pattern, strategy):
    runtime = StarsRuntime(backend(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    results = runtime.generate(["p1", "p2", "p3"], config(strategy, Constraint.regex(pattern)))
    for result in results:
        assert re.fullmatch(pattern, result.text), result.text
        assert result.finish_reason == "stop"  # the budget ran out on a complete match


def test_a_reward_that_rejects_every_segment_keeps_the_grammar_in_step():
    runtime = StarsRuntime(MaskingToy(), reward=CallableReward(never))  # type: ignore[arg-type]
    pattern = "(abc|xyz|q)+"
    results = runtime.generate(["p"] * 3, config("stars", Constraint.regex(pattern), max_rejections=4))
    for result in results:
        if result.finish_reason == "stop":
            assert re.fullmatch(pattern, result.text), result.text
        else:  # the budget ran out inside "abc" or "xyz": a valid prefix, reported as such
            assert result.finish_reason == "constraint_incomplete"
            assert re.fullmatch("(abc|xyz|q)*(a|ab|x|xy)", result.text), result.text
        assert result.stats.rejections >= 4 * 3  # every segment was rejected until forced
        assert result.stats.forced_accepts == result.stats.segments


def test_a_seeded_constrained_request_is_batch_independent(monkeypatch):
    """Three callers share the policy batch (asserted on the rows the batch advanced, since a
    reward call may judge fewer of them when a verdict comes back late, issue 19's overlap)."""
    widest: list[int] = []
    advance = ToyBatch.advance

    def recording_advance(self, steps):
        widest.append(self.num_rows)
        return advance(self, steps)

    monkeypatch.setattr(ToyBatch, "advance", recording_advance)
    runtime = StarsRuntime(MaskingToy(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    fenced = config("stars", Constraint.regex("(ab|cd|e)+"), max_new_tokens=12)
    [alone] = runtime.generate(["p1"], fenced)
    calls = [
        ("p0", fenced.updated(constraint=None, seed=9)),
        ("p1", fenced),
        ("p2", fenced.updated(constraint=Constraint.regex("[xyz]+"), seed=3)),
    ]
    widest.clear()
    runtime.scheduler.configure(max_wait=0.5)  # callers released together are admitted together
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, prompt, cfg):
        barrier.wait()
        results[i] = runtime.generate([prompt], cfg)[0]

    threads = [threading.Thread(target=worker, args=(i, *c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert max(widest) >= 3 * 3  # the three requests' candidates did decode in one batch
    assert (results[1].token_ids, results[1].text) == (alone.token_ids, alone.text)
    assert re.fullmatch("[xyz]+", results[2].text)
    assert not re.fullmatch("(ab|cd|e)+", results[0].text)  # the unconstrained neighbour is not fenced


def test_a_checking_backend_rejects_candidates_that_leave_the_grammar():
    runtime = StarsRuntime(CheckingToy(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    [result] = runtime.generate(["p"], config("vanilla", Constraint.regex("[a-p]+")))
    assert re.fullmatch("[a-p]+", result.text)
    assert result.stats.rejections > 0  # plain sampling resampled its invalid segments
    with pytest.raises(ConstraintError, match="no candidate of segment 0 fitted"):
        runtime.generate(["p"], config("stars", Constraint.regex("(zzz)+"), max_rejections=3))


def test_budget_exhaustion_before_the_grammar_is_complete_has_its_own_finish_reason():
    runtime = StarsRuntime(MaskingToy(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    [result] = runtime.generate(["p"], config("vanilla", Constraint.choice(["abcdefghijk"]), max_new_tokens=5))
    assert result.finish_reason == "constraint_incomplete"
    assert result.text == "abcde"


def xyz_share(prompts, responses):
    return [sum(c in "xyz" for c in r) / max(len(r), 1) for r in responses]


def test_an_accepted_candidate_that_is_not_the_first_row_carries_its_grammar_state():
    """Segments of 2 letters cut the words of (abc|xyz)+, so candidates leave their rows in
    different grammar states; the reward prefers xyz words, so the winner is often a later row.
    The rows after acceptance must be copies of the winner (its tokens and grammar state): a copy of
    another row would mask the next segment for the wrong state and break the pattern."""
    runtime = StarsRuntime(MaskingToy(), reward=CallableReward(xyz_share))  # type: ignore[arg-type]
    settings = config("stars", Constraint.regex("(abc|xyz)+"), horizon=2, max_new_tokens=12, target_reward=0.5)
    for seed in range(4):
        for result in runtime.generate(["p1", "p2", "p3"], settings.updated(seed=seed)):
            assert re.fullmatch("(abc|xyz)+", result.text), result.text
            assert result.finish_reason == "stop"
