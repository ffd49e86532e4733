"""The request scheduler: concurrent callers share lockstep batches, join between rounds, leave when
cancelled, and keep their own results and stats; faults stay with the request or group that caused them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends.hf import batch as batch_module

GREEDY = StarsConfig(temperature=0.0, horizon=4, max_new_tokens=24, target_reward=0.0, acceptance="hard")
PROMPTS = ["the first prompt", "a second, somewhat longer prompt", "third", "and a fourth one here"]


class Recorder:
    """A reward that accepts everything and records how many responses each call scored."""

    def __init__(self, delay: float = 0.0):
        self.sizes: list[int] = []
        self.prompts: list[set[str]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, prompts, responses):
        with self.lock:
            self.sizes.append(len(responses))
            self.prompts.append(set(prompts))
        time.sleep(self.delay)
        return [1.0] * len(responses)


@pytest.fixture
def tiny(tiny_model_dirs) -> StarsRuntime:
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    rt.scheduler.configure(max_batch_rows=64, max_wait=0.05)
    return rt


def alone(rt, prompt, config, reward):
    return rt.generate([prompt], config, reward=reward)[0]


def run_threads(fn, args_list, rt=None):
    """Run `fn(*args)` for every args in threads released together. With `rt`, its idle engine
    waits 0.5 s for the others (then its own setting again), so that callers released together
    start together even on a busy machine."""
    if rt is None:
        return _run_threads(fn, args_list)
    previous = rt.scheduler.max_wait
    rt.scheduler.configure(max_wait=0.5)
    try:
        return _run_threads(fn, args_list)
    finally:
        rt.scheduler.configure(max_wait=previous)


def _run_threads(fn, args_list):
    barrier = threading.Barrier(len(args_list))
    results: list = [None] * len(args_list)

    def worker(i, args):
        barrier.wait()
        results[i] = fn(*args)

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_callers_share_one_batch_and_get_their_own_results(tiny):
    reward = Recorder()
    expected = [alone(tiny, p, GREEDY, reward) for p in PROMPTS]
    reward.sizes.clear()
    results = run_threads(lambda p: alone(tiny, p, GREEDY, reward), [(p,) for p in PROMPTS], tiny)
    assert [r.token_ids for r in results] == [e.token_ids for e in expected]
    assert max(reward.sizes) == len(PROMPTS)  # one reward call scored all four callers' candidates
    for got, want in zip(results, expected, strict=True):  # stats are each request's own
        assert (got.stats.sampled_tokens, got.stats.rounds, got.stats.segments) == (
            want.stats.sampled_tokens,
            want.stats.rounds,
            want.stats.segments,
        )


def test_a_request_joins_a_running_batch_at_a_round_boundary_without_changing_any_output(tiny):
    reward = Recorder(delay=0.02)  # slows rounds so the second caller arrives mid-batch
    long_config = GREEDY.updated(max_new_tokens=60)
    long_alone = alone(tiny, PROMPTS[0], long_config, reward)
    short_alone = alone(tiny, PROMPTS[1], GREEDY, reward)
    reward.sizes.clear()
    reward.prompts.clear()

    stream = tiny.stream(PROMPTS[0], long_config, reward=reward)
    first = next(stream)  # the long request is now running
    assert first.text
    joined = alone(tiny, PROMPTS[1], GREEDY, reward)
    rest = list(stream)
    assert joined.token_ids == short_alone.token_ids
    assert stream.result.token_ids == long_alone.token_ids
    assert "".join(s.text for s in [first, *rest]) == long_alone.text
    # Whether the two are then scored in one reward call depends on timing in the shared batch: a
    # newcomer starts its segment on its own clock when admitted (mid-segment of the running row if
    # that row was parked for its verdict), so their segment ends need not coincide. Mixed horizons
    # meeting in one call are tested below with callers admitted together.


def test_requests_with_another_horizon_share_the_batch_and_meet_where_their_segments_end(tiny):
    """Horizons 4 and 6 in one batch: each request segments on its own clock and keeps its lone
    output. Where their segments end together (every 12 steps under the "next" heartbeat, see
    tests/unit/test_heartbeat.py) they share a reward call only if the K = 4 rows' earlier verdicts
    came back in time: rows waiting for a verdict are parked while the others decode on, so the
    shared call depends on timing and is not asserted here."""
    reward = Recorder(delay=0.01)
    other = GREEDY.updated(horizon=6)
    calls = [(PROMPTS[0], GREEDY), (PROMPTS[1], GREEDY), (PROMPTS[2], other), (PROMPTS[3], other)]
    expected = [alone(tiny, p, c, reward) for p, c in calls]
    reward.prompts.clear()
    results = run_threads(lambda p, c: alone(tiny, p, c, reward), calls, tiny)
    assert [r.token_ids for r in results] == [e.token_ids for e in expected]
    assert all(r.stats.accepted_tokens == 24 for r in results)
    assert [len(r.segments) for r in results] == [6, 6, 4, 4]  # each request keeps its own K
    assert any(len(p) > 1 for p in reward.prompts)  # rows of one horizon judged in one call


async def test_a_cancelled_task_leaves_at_the_next_round_and_the_others_finish(tiny):
    reward = Recorder(delay=0.02)
    config = GREEDY.updated(max_new_tokens=200)
    doomed = asyncio.create_task(tiny.agenerate([PROMPTS[0]], config, reward=reward))
    survivor = asyncio.create_task(tiny.agenerate([PROMPTS[1]], GREEDY, reward=reward))
    await asyncio.sleep(0.3)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    [result] = await survivor
    assert result.stats.accepted_tokens == 24
    for _ in range(100):  # the cancelled request leaves the engine soon after
        if not tiny.scheduler.busy:
            break
        await asyncio.sleep(0.05)
    assert not tiny.scheduler.busy
    assert (await tiny.agenerate([PROMPTS[2]], GREEDY, reward=reward))[0].stats.accepted_tokens == 24


def test_an_abandoned_stream_is_cancelled_and_the_runtime_stays_ready(tiny):
    reward = Recorder()
    stream = tiny.stream(PROMPTS[0], GREEDY.updated(max_new_tokens=200), reward=reward)
    next(stream)
    del stream  # no close(): garbage collection cancels it
    for _ in range(100):
        if not tiny.scheduler.busy:
            break
        time.sleep(0.05)
    assert not tiny.scheduler.busy
    assert alone(tiny, PROMPTS[1], GREEDY, reward).stats.accepted_tokens == 24


def test_a_reward_failing_for_one_caller_fails_only_that_caller(tiny):
    def picky(prompts, responses):
        if PROMPTS[2] in prompts:
            raise RuntimeError("this prompt breaks the reward model")
        return [1.0] * len(responses)

    results = run_threads(
        lambda p: tiny.generate([p], GREEDY, reward=picky, raise_errors=False)[0], [(p,) for p in PROMPTS]
    )
    assert [r.finish_reason == "error" for r in results] == [False, False, True, False]
    assert "breaks the reward model" in str(results[2].error)
    assert all(r.stats.accepted_tokens == 24 for i, r in enumerate(results) if i != 2)


def test_out_of_memory_splits_the_batch_and_every_caller_still_gets_its_exact_result(tiny, monkeypatch):
    reward = Recorder()
    expected = [alone(tiny, p, GREEDY, reward) for p in PROMPTS]
    original = batch_module.LockstepBatch.advance
    failures = []

    def small_memory(self, steps, *args, **kwargs):
        if self.num_rows > 2:
            failures.append(self.num_rows)
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return original(self, steps, *args, **kwargs)

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", small_memory)
    results = tiny.generate(PROMPTS, GREEDY, reward=reward)
    assert failures  # the first round of four rows ran out of memory
    assert [r.token_ids for r in results] == [e.token_ids for e in expected]
    assert all(r.finish_reason in ("length", "eos") for r in results)


def test_an_unexpected_error_fails_its_group_and_the_engine_keeps_serving(tiny, monkeypatch):
    reward = Recorder()
    original = batch_module.LockstepBatch.advance
    calls = []

    def broken_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug in one round")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", broken_once)
    with pytest.raises(ValueError, match="a bug in one round"):
        tiny.generate([PROMPTS[0]], GREEDY, reward=reward)
    assert alone(tiny, PROMPTS[1], GREEDY, reward).stats.accepted_tokens == 24


def test_max_batch_rows_bounds_a_group_and_waiting_requests_join_as_rows_free(tiny):
    reward = Recorder()
    tiny.scheduler.configure(max_batch_rows=2)
    try:
        expected = [alone(tiny, p, GREEDY, reward) for p in PROMPTS]
        reward.sizes.clear()
        results = tiny.generate(PROMPTS, GREEDY, reward=reward)
    finally:
        tiny.scheduler.configure(max_batch_rows=64)
    assert max(reward.sizes) <= 2
    assert [r.token_ids for r in results] == [e.token_ids for e in expected]


class TextReward:
    """A deterministic reward of the text (no default target: STARS calibrates per request)."""

    def __init__(self):
        self.prompts: list[set[str]] = []
        self.lock = threading.Lock()

    def __call__(self, prompts, responses):
        with self.lock:
            self.prompts.append(set(prompts))
        time.sleep(0.01)  # keeps rounds long enough for concurrent callers to meet
        return [(sum(map(ord, r)) % 101) / 100 for r in responses]


def test_a_requests_result_does_not_depend_on_who_shares_its_batch(tiny):
    """Calibration, sampling and acceptance are per request: the same result alone and merged with
    requests of other seeds, quantiles and candidate counts."""
    reward = TextReward()
    base = StarsConfig(horizon=4, max_new_tokens=16, max_rejections=3)
    calls = [
        (PROMPTS[0], base.updated(seed=1, calibration_quantile=0.3, num_candidates=2)),
        (PROMPTS[1], base.updated(seed=5, calibration_quantile=0.9, num_candidates=3, alpha=0.9)),
        (PROMPTS[2], base.updated(seed=9, calibration_quantile=0.6, acceptance="hard")),
    ]
    expected = [alone(tiny, p, c, reward) for p, c in calls]
    reward.prompts.clear()
    merged = run_threads(lambda p, c: alone(tiny, p, c, reward), calls, tiny)
    assert any(len(p) == len(calls) for p in reward.prompts)  # they did share one batch
    for got, want in zip(merged, expected, strict=True):
        assert (got.text, got.token_ids, got.reward) == (want.text, want.token_ids, want.reward)
        assert got.stats.rejections == want.stats.rejections
    assert sum(r.stats.rejections for r in expected) > 0  # the thresholds mattered
