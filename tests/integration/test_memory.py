"""Memory under sustained load: a finished request (completed, hung up, cancelled, with a reward
function of its own) leaves no tensors, request states, threads or reward references behind, and
the engine gives memory back when it goes idle. Counts, not time."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.benchmarks.memory_loop import live_objects
from stars_plugins.rewards import CallableReward
from stars_plugins.scheduler import _reward_locks

CONFIG = StarsConfig(temperature=0.8, horizon=4, max_new_tokens=12, target_reward=0.0, acceptance="hard")
PROMPTS = ["the first prompt", "a second, somewhat longer prompt", "third", "and a fourth one here"]


@pytest.fixture
def tiny(tiny_model_dirs) -> StarsRuntime:
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    rt.scheduler.configure(max_batch_rows=64, max_wait=0.01)
    return rt


def group_threads() -> int:
    return sum(t.name.startswith("stars-group-") for t in threading.enumerate())


def wait_idle(rt: StarsRuntime) -> None:
    """Until the scheduler holds nothing and its last round's thread has exited (it hands its
    outcome over just before it ends, so it may outlive `busy` by a moment)."""
    deadline = time.monotonic() + 60
    while (rt.scheduler.busy or group_threads()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not rt.scheduler.busy and not group_threads()


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
        deadline = time.monotonic() + 30  # the engine trims right after it has let go of its groups
        while tiny.scheduler.trimmer.trims <= trims_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tiny.scheduler.trimmer.trims > trims_before  # the engine gave memory back when idle
