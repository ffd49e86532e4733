"""Memory under sustained load: when freed memory is given back (`Trimmer`), glibc's knobs, and
that a finished request leaves no objects behind (tensors, request states, threads, reward locks)."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.benchmarks.memory_loop import live_objects
from stars_plugins.memory import Trimmer, limit_malloc_arenas, malloc_trim
from stars_plugins.rewards import CallableReward
from stars_plugins.scheduler import _PolicyLock, _reward_locks, _RewardOutsidePolicyLock

CONFIG = StarsConfig(temperature=0.8, horizon=4, max_new_tokens=12, target_reward=0.0, acceptance="hard")
PROMPTS = ["the first prompt", "a second, somewhat longer prompt", "third", "and a fourth one here"]


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_going_idle_trims_once_and_a_rising_load_never_does():
    trim = Counting()
    trimmer = Trimmer(enabled=True, min_interval=3600, trim=trim)
    assert not trimmer.observe(0)  # nothing ran yet
    for rows in (4, 16, 32, 32):
        assert not trimmer.observe(rows)
    assert trimmer.observe(0)  # idle: always, whatever the interval
    assert not trimmer.observe(0)  # still idle, nothing new to give back
    assert (trim.calls, trimmer.trims) == (1, 1)


def test_a_halved_load_trims_at_most_once_per_interval():
    trim = Counting()
    trimmer = Trimmer(enabled=True, min_interval=0.2, trim=trim)
    trimmer.observe(32)
    assert not trimmer.observe(17)  # more than half of the peak
    assert trimmer.observe(16)  # half of the peak
    trimmer.observe(40)
    assert not trimmer.observe(8)  # halved again, but within the interval
    time.sleep(0.25)
    assert trimmer.observe(8)
    assert trim.calls == 2


def test_an_idle_only_trimmer_ignores_halvings():
    trim = Counting()
    trimmer = Trimmer(enabled=True, on_halving=False, min_interval=0, trim=trim)
    trimmer.observe(32)
    assert not trimmer.observe(1)
    assert trimmer.observe(0)
    assert trim.calls == 1


def test_a_disabled_trimmer_never_trims(monkeypatch):
    trim = Counting()
    monkeypatch.setenv("STARS_MALLOC_TRIM", "0")
    trimmer = Trimmer(trim=trim)
    trimmer.observe(8)
    assert not trimmer.observe(0)
    assert trim.calls == 0 and not trimmer.enabled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_knobs_answer_and_bad_values_are_refused():
    assert malloc_trim() is True
    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)


def test_a_reward_no_group_uses_leaves_no_lock_and_no_reference_behind():
    def per_call(prompts, responses):
        return [0.0] * len(responses)

    alive = weakref.ref(per_call)
    view = _RewardOutsidePolicyLock(CallableReward(per_call, name="once"), _PolicyLock())
    assert view.score(["p"], ["r"]) == [0.0]
    before = len(_reward_locks)
    del view, per_call
    gc.collect()
    assert alive() is None  # the lock registry held the function (and its closure) for ever
    assert len(_reward_locks) == before - 1


# ---------------------------------------------------------------------------- with a model
@pytest.fixture
def tiny(tiny_model_dirs) -> StarsRuntime:
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    rt.scheduler.configure(max_batch_rows=64, max_wait=0.01)
    return rt


def wait_idle(rt: StarsRuntime) -> None:
    deadline = time.monotonic() + 60
    while rt.scheduler.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not rt.scheduler.busy


def one_round_of_traffic(rt: StarsRuntime, seed: int) -> list[weakref.ref]:
    """A batched call, concurrent callers, a hung-up stream and a cancelled call, each with a reward
    function of its own (as a caller passing a lambda per request would): weak references to them."""
    rewards = [CallableReward(lambda p, r, k=k: [float(k % 3)] * len(r), name=f"r{seed}-{k}") for k in range(4)]
    config = CONFIG.updated(num_candidates=2, seed=seed)
    rt.generate(PROMPTS, config, reward=rewards[0])
    threads = [
        threading.Thread(target=rt.generate, args=([p], config), kwargs={"reward": rewards[1]}) for p in PROMPTS[:2]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    with rt.stream(PROMPTS[2], config.updated(max_new_tokens=40), reward=rewards[2]) as stream:
        next(stream)  # hang up after the first segment
    job = rt.start(PROMPTS[3:], config.updated(max_new_tokens=40), reward=rewards[3])
    events = job.events()
    next(events)
    events.close()  # cancels at the next round
    del job, events, stream
    wait_idle(rt)
    return [weakref.ref(r.fn) for r in rewards]


def test_finished_requests_leave_no_tensors_requests_threads_or_rewards_behind(tiny):
    one_round_of_traffic(tiny, seed=0)  # warm-up: lazily built caches, the engine thread
    before = live_objects()
    locks_before = len(_reward_locks)
    trims_before = tiny.scheduler.trimmer.trims
    gone = [ref for seed in (1, 2, 3) for ref in one_round_of_traffic(tiny, seed)]
    gc.collect()
    after = live_objects()
    assert after["requests"] == 0 == before["requests"]
    assert after["tensors"] <= before["tensors"], (before, after)
    assert after["threads"] <= before["threads"], (before, after)
    assert len(_reward_locks) <= locks_before
    assert [ref() for ref in gone] == [None] * len(gone)  # per-call reward functions were let go
    if tiny.scheduler.trimmer.enabled and sys.platform.startswith("linux"):
        assert tiny.scheduler.trimmer.trims > trims_before  # the engine gave memory back when idle
