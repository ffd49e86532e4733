"""`stars bench --mixed`: many differently configured chains on one loaded policy.

16 callers (by default) at once, horizons {4, 8, 16, 32} x rewards {"harmless", "sentiment"},
against the same callers (same prompts and seeds) with one horizon and one reward, and against
the same mixed requests one after another. Then the heartbeat rules side by side on the mixed
callers: reward calls, idle row-steps and throughput (see `decoding/engine.py`), and the grouped
design (one batch per horizon and reward, groups taking turns) for reference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stars_plugins.acceptance import quantile
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.engine import HeartbeatStats
from stars_plugins.results import GenerationResult
from stars_plugins.runtime import StarsRuntime

HORIZONS = (4, 8, 16, 32)
REWARDS = ("harmless", "sentiment")

Work = list[tuple[str, StarsConfig, str]]  # (prompt, config, reward name) per caller


def mixed_work(
    prompts: Sequence[str], base: StarsConfig, callers: int, horizons: Sequence[int], rewards: Sequence[str]
) -> Work:
    """Caller i: prompt i, seed i, horizon `horizons[i % H]`, reward `rewards[(i // H) % R]`."""
    return [
        (
            prompts[i % len(prompts)],
            base.updated(horizon=horizons[i % len(horizons)], seed=i),
            rewards[(i // len(horizons)) % len(rewards)],
        )
        for i in range(callers)
    ]


def uniform_work(work: Work, horizon: int, reward: str | None) -> Work:
    """The same callers with one horizon, and one reward (None: each keeps its own)."""
    return [(p, c.updated(horizon=horizon), reward or own) for p, c, own in work]


def run_callers(runtime: StarsRuntime, work: Work, *, concurrent: bool = True) -> dict[str, Any]:
    """Run the callers at once (a thread each) or one after another; latency from the common start."""
    results: list[GenerationResult | None] = [None] * len(work)
    latencies = [0.0] * len(work)
    stats = runtime.scheduler.heartbeat_stats
    before = HeartbeatStats(**vars(stats))
    start = time.perf_counter()
    if not concurrent:
        for i, (prompt, config, reward) in enumerate(work):
            results[i] = runtime.generate([prompt], config, reward=reward)[0]
            latencies[i] = time.perf_counter() - start
    else:
        barrier = threading.Barrier(len(work) + 1)

        def caller(i: int) -> None:
            prompt, config, reward = work[i]
            barrier.wait()
            results[i] = runtime.generate([prompt], config, reward=reward)[0]
            latencies[i] = time.perf_counter() - start

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(work))]
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        barrier.wait()
        for thread in threads:
            thread.join()
    wall = time.perf_counter() - start
    done = [r for r in results if r is not None]
    tokens = sum(r.stats.accepted_tokens for r in done)
    return {
        "requests": len(done),
        "accepted_tokens": tokens,
        "wall_seconds": round(wall, 3),
        "tokens_per_second": round(tokens / wall, 2) if wall else 0.0,
        "latency_p50": round(quantile(latencies, 0.5), 3),
        "latency_p95": round(quantile(latencies, 0.95), 3),
        "heartbeats": stats.heartbeats - before.heartbeats,
        "reward_calls": stats.reward_calls - before.reward_calls,
        "idle_row_fraction": round(
            1 - (stats.live_row_steps - before.live_row_steps) / max(stats.row_steps - before.row_steps, 1), 3
        ),
        "token_ids": [r.token_ids for r in results if r is not None],
    }


@contextmanager
def _scheduler(runtime: StarsRuntime, **settings: Any) -> Iterator[None]:
    s = runtime.scheduler
    saved = {"heartbeat": s.heartbeat, "max_chunk": s.max_chunk}
    s.configure(**settings)
    try:
        yield
    finally:
        s.configure(**saved)


@contextmanager
def _grouped(runtime: StarsRuntime) -> Iterator[None]:
    """The design before the shared batch: one batch per (strategy, horizon, reward), taking turns."""
    policy = runtime.policy
    had = "per_row_clocks" in vars(policy)
    saved = getattr(policy, "per_row_clocks", False)
    policy.per_row_clocks = False  # type: ignore[misc]
    try:
        yield
    finally:
        if had:
            policy.per_row_clocks = saved  # type: ignore[misc]
        else:
            del policy.per_row_clocks  # type: ignore[misc]


def run_mixed(
    runtime: StarsRuntime,
    prompts: Sequence[str],
    base: StarsConfig,
    *,
    callers: int = 16,
    horizons: Sequence[int] = HORIZONS,
    rewards: Sequence[str] = REWARDS,
    uniform_horizon: int = 16,
    heartbeats: Sequence[str] = ("next", "gcd", "step", "longest"),
    grouped: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    work = mixed_work(prompts, base, callers, horizons, rewards)
    for reward in rewards:  # warm-up: load every reward model and the policy's kernels
        runtime.generate(list(prompts[:2]), base.updated(max_new_tokens=4), reward=reward)
    runs: dict[str, dict[str, Any]] = {}

    def record(name: str, result: dict[str, Any]) -> None:
        runs[name] = result
        progress(f"{name}: {result['tokens_per_second']} accepted tok/s, wall {result['wall_seconds']} s")

    for reward in rewards:
        record(
            f"uniform K={uniform_horizon} {reward}", run_callers(runtime, uniform_work(work, uniform_horizon, reward))
        )
    if len(rewards) > 1:  # one horizon, the mixed rewards: what mixing horizons alone costs
        record(f"K={uniform_horizon}, mixed rewards", run_callers(runtime, uniform_work(work, uniform_horizon, None)))
    for heartbeat in heartbeats:
        with _scheduler(runtime, heartbeat=heartbeat):
            record(f"mixed heartbeat={heartbeat}", run_callers(runtime, work))
    if grouped:
        with _grouped(runtime):
            grouped_run = run_callers(runtime, work)
        grouped_run.update(heartbeats=None, reward_calls=None, idle_row_fraction=None)  # not counted there
        record("mixed, grouped (one batch per horizon and reward)", grouped_run)
    record("mixed, one after another", run_callers(runtime, work, concurrent=False))

    mixed = runs[f"mixed heartbeat={heartbeats[0]}"]
    uniform = [runs[f"uniform K={uniform_horizon} {reward}"] for reward in rewards]
    best_uniform = max(uniform, key=lambda r: r["tokens_per_second"])
    sequential = runs["mixed, one after another"]
    same = all(r["token_ids"] == sequential["token_ids"] for n, r in runs.items() if n.startswith("mixed"))
    report = {
        "policy": runtime.model_name,
        "callers": callers,
        "horizons": list(horizons),
        "rewards": list(rewards),
        "config": base.model_dump(include={"num_candidates", "max_new_tokens", "temperature", "top_k"}),
        "runs": {
            name: {k: v for k, v in r.items() if k != "token_ids"}
            | {"same_tokens_as_one_after_another": r["token_ids"] == sequential["token_ids"]}
            for name, r in runs.items()
        },
        "mixed_vs_uniform": round(mixed["tokens_per_second"] / best_uniform["tokens_per_second"], 3),
        "mixed_vs_uniform_per_reward": {
            reward: round(mixed["tokens_per_second"] / u["tokens_per_second"], 3)
            for reward, u in zip(rewards, uniform, strict=True)
        },
        "mixed_vs_sequential": round(mixed["tokens_per_second"] / sequential["tokens_per_second"], 3),
        "p95_over_p50": round(mixed["latency_p95"] / max(mixed["latency_p50"], 1e-9), 3),
        "same_tokens_in_every_mixed_run": same,
    }
    return report


def mixed_table(report: dict[str, Any]) -> str:
    rows = [
        "| run | accepted tok/s | wall s | p50 s | p95 s | heartbeats | reward calls | idle row-steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["runs"].items():
        idle = "-" if r["idle_row_fraction"] is None else f"{r['idle_row_fraction']:.1%}"
        counts = ["-" if r[k] is None else str(r[k]) for k in ("heartbeats", "reward_calls")]
        rows.append(
            f"| {name} | {r['tokens_per_second']:.1f} | {r['wall_seconds']:.1f} | {r['latency_p50']:.2f} "
            f"| {r['latency_p95']:.2f} | {counts[0]} | {counts[1]} | {idle} |"
        )
    return "\n".join(rows)


__all__ = ["mixed_table", "mixed_work", "run_callers", "run_mixed"]
