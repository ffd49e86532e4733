"""The shared batch's heartbeat rules on the toy backend (no model): every rule gives each seeded
request its lone output; they differ in how often the batch stops to judge."""

from __future__ import annotations

import threading

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.decoding.engine import HEARTBEATS, heartbeat_steps
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


def stops(rule, horizons, steps=24, max_chunk=16):
    """The clocks at which rule `rule` stops a batch whose rows (one per horizon, begun together,
    never parked) each start their next segment as soon as the last one ended."""
    clock, begun, out = 0, [0] * len(horizons), []
    while clock < steps:
        left = [k - (clock - b) for k, b in zip(horizons, begun, strict=True)]
        clock += heartbeat_steps(rule, left=left, fixed=[True] * len(horizons), periods=horizons, max_chunk=max_chunk)
        begun = [clock if clock - b == k else b for k, b in zip(horizons, begun, strict=True)]
        out.append(clock)
    return out


def test_next_stops_where_a_segment_ends_so_horizons_meet_at_their_common_multiples():
    assert stops("next", [4, 6]) == [4, 6, 8, 12, 16, 18, 20, 24]
    assert stops("next", [8, 16]) == [8, 16, 24]
    assert stops("gcd", [4, 6]) == list(range(2, 25, 2))
    assert stops("step", [4, 6], steps=3) == [1, 2, 3]
    assert stops("longest", [4, 6], steps=6) == [6]
    assert stops("next", [32], max_chunk=16) == [16, 32]  # a long segment is cut in chunks


def test_segments_that_end_by_a_boundary_rule_advance_in_chunks():
    assert heartbeat_steps("next", left=[30], fixed=[False], periods=[], max_chunk=16) == 4
    assert heartbeat_steps("next", left=[30, 5], fixed=[False, True], periods=[], max_chunk=16) == 5
