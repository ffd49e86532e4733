"""The shared batch's heartbeat rules on the toy backend (no model): every rule gives each seeded
request its lone output; they differ in how often the batch stops to judge."""

from __future__ import annotations

import threading

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.decoding.engine import HEARTBEATS
from stars_plugins.rewards.base import CallableReward
from tests.helpers.toy_backend import ToyBackend


def vowels(prompts, responses):
    return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]


def consonants(prompts, responses):
    return [1 - v for v in vowels(prompts, responses)]


CALLS = [
    ("p0", StarsConfig(horizon=4, max_new_tokens=16, seed=1, target_reward=0.3, alpha=1.0, acceptance="hard"), vowels),
    ("p1", StarsConfig(horizon=8, max_new_tokens=16, seed=2, num_candidates=2), consonants),
    ("p2", StarsConfig(strategy="vanilla", horizon=6, max_new_tokens=12, seed=3), vowels),
    ("p3", StarsConfig(strategy="best_of_n", horizon=4, max_new_tokens=8, seed=4, num_candidates=3), consonants),
]


def run_together(rt):
    results: list = [None] * len(CALLS)
    barrier = threading.Barrier(len(CALLS))

    def run(i):
        prompt, config, reward = CALLS[i]
        barrier.wait()
        results[i] = rt.generate([prompt], config, reward=reward)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(CALLS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.mark.parametrize("heartbeat", HEARTBEATS)
def test_every_heartbeat_rule_gives_each_request_its_lone_output(heartbeat):
    rt = StarsRuntime(ToyBackend(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    rt.scheduler.configure(heartbeat=heartbeat, max_wait=0.05)
    alone = [rt.generate([p], c, reward=r)[0] for p, c, r in CALLS]
    before = rt.scheduler.heartbeat_stats.heartbeats
    mixed = run_together(rt)
    assert [m.token_ids for m in mixed] == [a.token_ids for a in alone]
    assert [m.reward for m in mixed] == [a.reward for a in alone]
    assert rt.scheduler.heartbeat_stats.heartbeats > before


def test_q_equal_one_stops_at_every_step_and_next_only_where_segments_end():
    counts = {}
    for heartbeat in ("step", "next"):
        rt = StarsRuntime(ToyBackend(), reward=CallableReward(vowels))  # type: ignore[arg-type]
        rt.scheduler.configure(heartbeat=heartbeat)
        rt.generate(["p"], StarsConfig(horizon=8, max_new_tokens=16, seed=1, target_reward=0.0, acceptance="hard"))
        counts[heartbeat] = rt.scheduler.heartbeat_stats.heartbeats
    assert counts == {"step": 16, "next": 2}


def test_an_unknown_heartbeat_rule_is_refused():
    rt = StarsRuntime(ToyBackend(), reward=CallableReward(vowels))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heartbeat must be one of next, gcd, step, longest"):
        rt.scheduler.configure(heartbeat="sometimes")
    with pytest.raises(ValueError, match="max_chunk"):
        rt.scheduler.configure(max_chunk=0)
