"""`stars bench`: strategies x batch sizes on the same prompts, measured side by side in one run."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stars_plugins.acceptance import quantile
from stars_plugins.config import StarsConfig
from stars_plugins.jsonl import read_jsonl
from stars_plugins.results import GenerationResult
from stars_plugins.runtime import StarsRuntime


def builtin_prompts(name: str = "prompts.txt") -> list[str]:
    """Prompts shipped in `stars_plugins/data` (one per line, `#` comments)."""
    text = resources.files("stars_plugins.benchmarks").joinpath("data", name).read_text(encoding="utf-8")
    return read_prompt_lines(text)


def read_prompt_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompt_file(path: str | Path) -> list[str]:
    """A prompt file: one prompt per line, or a JSONL file with a "prompt" field per line."""
    path = Path(path)
    if path.suffix == ".jsonl":
        prompts = []
        for where, row in read_jsonl(path, what="prompt file"):
            if not isinstance(row.get("prompt"), str):
                raise ValueError(f"{where}: expected a JSON object with a 'prompt' string")
            prompts.append(row["prompt"])
        return prompts
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
    return read_prompt_lines(path.read_text(encoding="utf-8"))


@dataclass
class BenchRow:
    strategy: str
    batch_size: int
    requests: int
    accepted_tokens: int
    sampled_tokens: int
    wall_seconds: float
    rejections: int
    discarded_tokens: int
    rejected_tokens: int
    reward_calls: int
    rewards: list[float | None] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.accepted_tokens / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def mean_reward(self) -> float:
        finite = [r for r in self.rewards if r is not None and math.isfinite(r)]
        return statistics.fmean(finite) if finite else float("nan")

    @property
    def discarded_per_rejection(self) -> float:
        return self.rejected_tokens / self.rejections if self.rejections else 0.0

    @property
    def reward_calls_per_100_tokens(self) -> float:
        return 100.0 * self.reward_calls / self.accepted_tokens if self.accepted_tokens else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "rewards"},
            "tokens_per_second": round(self.tokens_per_second, 2),
            "mean_reward": round(self.mean_reward, 4),
            "discarded_per_rejection": round(self.discarded_per_rejection, 2),
            "reward_calls_per_100_tokens": round(self.reward_calls_per_100_tokens, 2),
            "rewards": self.rewards,
        }


def run_batches(runtime: StarsRuntime, prompts: Sequence[str], config: StarsConfig, batch_size: int) -> BenchRow:
    """Run `prompts` in consecutive batches of `batch_size`; time the whole thing."""
    results: list[GenerationResult] = []
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        results.extend(runtime.generate(list(prompts[i : i + batch_size]), config, raise_errors=False))
    wall = time.perf_counter() - start
    return BenchRow(
        strategy=config.strategy,
        batch_size=batch_size,
        requests=len(prompts),
        accepted_tokens=sum(r.stats.accepted_tokens for r in results),
        sampled_tokens=sum(r.stats.sampled_tokens for r in results),
        wall_seconds=wall,
        rejections=sum(r.stats.rejections for r in results),
        discarded_tokens=sum(r.stats.discarded_tokens for r in results),
        rejected_tokens=sum(r.stats.rejected_tokens for r in results),
        reward_calls=sum(r.stats.reward_calls for r in results),
        rewards=[r.reward for r in results],
    )


def effective_batch_sizes(batch_sizes: Sequence[int], num_prompts: int) -> list[int]:
    """The batch sizes that can really run on `num_prompts` prompts: a batch never holds more prompts
    than there are, so 16 with 4 prompts runs (and is labelled) as 4. Order kept, duplicates dropped."""
    sizes: list[int] = []
    for b in batch_sizes:
        if b < 1:
            raise ValueError(f"batch sizes must be >= 1, got {b}")
        real = min(b, max(1, num_prompts))
        if real not in sizes:
            sizes.append(real)
    return sizes


def win_tie_rate(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Share of prompts where a's final reward is at least b's (scale-free)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return sum(x >= y for x, y in pairs) / len(pairs) if pairs else float("nan")


def comparisons(rows: Sequence[BenchRow]) -> dict[str, float]:
    """The ratios the performance targets are stated in, computed from rows of the same run."""
    by = {(r.strategy, r.batch_size): r for r in rows}
    out: dict[str, float] = {}
    sizes = sorted({r.batch_size for r in rows})
    for b in sizes:
        stars = by.get(("stars", b))
        if stars is None:
            continue
        if b != 1 and ("stars", 1) in by:
            out[f"stars_b{b}_vs_stars_b1_throughput"] = stars.tokens_per_second / by[("stars", 1)].tokens_per_second
        if ("cards", b) in by:
            cards = by[("cards", b)]
            out[f"stars_vs_cards_b{b}_throughput"] = stars.tokens_per_second / cards.tokens_per_second
            out[f"stars_vs_cards_b{b}_win_tie"] = win_tie_rate(stars.rewards, cards.rewards)
        if ("vanilla", b) in by:
            out[f"stars_vs_vanilla_b{b}_throughput"] = stars.tokens_per_second / by[("vanilla", b)].tokens_per_second
    return {k: round(v, 3) for k, v in out.items()}


def markdown_table(rows: Sequence[BenchRow]) -> str:
    header = (
        "| strategy | batch | accepted tok/s | mean reward | rejections | discarded/rejection "
        "| reward calls/100 tok | wall s |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r.strategy} | {r.batch_size} | {r.tokens_per_second:.1f} | {r.mean_reward:.3f} | {r.rejections} "
        f"| {r.discarded_per_rejection:.1f} | {r.reward_calls_per_100_tokens:.1f} | {r.wall_seconds:.1f} |"
        for r in rows
    ]
    return "\n".join([header, *lines])


def run_bench(
    runtime: StarsRuntime,
    prompts: Sequence[str],
    *,
    strategies: Sequence[str],
    batch_sizes: Sequence[int],
    config: StarsConfig,
    progress: bool = True,
) -> dict[str, Any]:
    """Every (strategy, batch size) on the same prompts, after one warm-up call."""
    from tqdm.auto import tqdm

    batch_sizes = effective_batch_sizes(batch_sizes, len(prompts))
    runtime.generate(list(prompts[:2]), config.updated(max_new_tokens=4, strategy="vanilla"))  # warm-up
    rows = []
    cells = [(s, b) for s in strategies for b in batch_sizes]
    with tqdm(cells, desc="bench", disable=not progress, unit="run") as bar:
        for strategy, batch_size in bar:
            bar.set_postfix_str(f"{strategy} x{batch_size}")
            rows.append(run_batches(runtime, prompts, config.for_strategy(strategy), batch_size))
    return {
        "policy": runtime.model_name,
        "reward": runtime.reward.name,
        "config": config.model_dump(),
        "prompts": list(prompts),
        "rows": [r.summary() for r in rows],
        "comparisons": comparisons(rows),
        "table": markdown_table(rows),
    }


# ---------------------------------------------------------------------------- the reward model alone
def run_reward_bench(
    reward: Any, prompts: Sequence[str], *, batch_size: int = 64, repeats: int = 5, response: str | None = None
) -> dict[str, Any]:
    """Time `reward.score` on `batch_size` (prompt, response) pairs, after one warm-up call.

    The median of `repeats` calls is reported: machine load moves single calls a lot."""
    from stars_plugins.rewards import score_checked

    text = response or "First, loosen the nuts, then lift the car with the jack and swap the wheel. " * 3
    batch_prompts = [prompts[i % len(prompts)] for i in range(batch_size)]
    responses = [text] * batch_size
    score_checked(reward, batch_prompts, responses)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_checked(reward, batch_prompts, responses)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "reward": reward.name,
        "pairs": batch_size,
        "repeats": repeats,
        "seconds": [round(t, 4) for t in times],
        "median_seconds": round(median, 4),
        "pairs_per_second": round(batch_size / median, 1) if median else 0.0,
    }


# ---------------------------------------------------------------------------- concurrent callers
def _mode_summary(results: Sequence[GenerationResult], latencies: Sequence[float], wall: float) -> dict[str, Any]:
    tokens = sum(r.stats.accepted_tokens for r in results)
    return {
        "requests": len(results),
        "accepted_tokens": tokens,
        "wall_seconds": round(wall, 3),
        "tokens_per_second": round(tokens / wall, 2) if wall else 0.0,
        "latency_p50": round(quantile(latencies, 0.5), 3),
        "latency_p95": round(quantile(latencies, 0.95), 3),
        # concurrent wall time is bounded below by the request needing the most rounds
        "rounds_max": max((r.stats.rounds for r in results), default=0),
        "rounds_total": sum(r.stats.rounds for r in results),
        "rejections": sum(r.stats.rejections for r in results),
        "mean_reward": _mean([r.reward for r in results if r.reward is not None]),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def run_concurrent(
    runtime: StarsRuntime,
    prompts: Sequence[str],
    configs: Sequence[StarsConfig],
    *,
    callers: int = 16,
) -> dict[str, Any]:
    """`callers` requests (split evenly over `configs`) issued at once from separate threads, against
    the same requests one after another. Latency is measured per request from the common start."""
    import threading

    work = [(prompts[i % len(prompts)], configs[i * len(configs) // callers]) for i in range(callers)]
    runtime.generate(list(prompts[:2]), configs[0].updated(max_new_tokens=4))  # warm-up

    sequential: list[GenerationResult] = []
    seq_latencies = []
    start = time.perf_counter()
    for prompt, config in work:
        sequential.extend(runtime.generate([prompt], config))
        seq_latencies.append(time.perf_counter() - start)
    seq_wall = time.perf_counter() - start

    concurrent: list[GenerationResult | None] = [None] * callers
    latencies = [0.0] * callers
    barrier = threading.Barrier(callers + 1)

    def caller(i: int) -> None:
        barrier.wait()
        concurrent[i] = runtime.generate([work[i][0]], work[i][1])[0]
        latencies[i] = time.perf_counter() - start_concurrent

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    start_concurrent = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    conc_wall = time.perf_counter() - start_concurrent
    done = [r for r in concurrent if r is not None]
    report = {
        "policy": runtime.model_name,
        "reward": runtime.reward.name,
        "callers": callers,
        "configs": [
            c.model_dump(include={"strategy", "horizon", "num_candidates", "max_new_tokens", "temperature"})
            for c in configs
        ],
        "sequential": _mode_summary(sequential, seq_latencies, seq_wall),
        "concurrent": _mode_summary(done, latencies, conc_wall),
    }
    report["throughput_ratio"] = round(
        report["concurrent"]["tokens_per_second"] / report["sequential"]["tokens_per_second"], 3
    )
    return report


def concurrent_table(report: dict[str, Any]) -> str:
    rows = [
        "| mode | requests | accepted tok/s | p50 latency s | p95 latency s | wall s | rejections "
        "| rounds of the longest request | mean final reward |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in ("sequential", "concurrent"):
        m = report[mode]
        rows.append(
            f"| {mode} | {m['requests']} | {m['tokens_per_second']:.1f} | {m['latency_p50']:.2f} "
            f"| {m['latency_p95']:.2f} | {m['wall_seconds']:.1f} | {m['rejections']} | {m['rounds_max']} "
            f"| {m['mean_reward']} |"
        )
    return "\n".join(rows)
