"""`stars bench --score-only` for two heads of the "harmless" reward, side by side in one process.

    python -m reward_training.bench_heads OLD.safetensors NEW.safetensors [--rounds 5] [--repeats 5]

Timings on a shared machine drift, so the two heads are timed in alternating rounds (old, new, old,
new ...), each round being `stars bench --score-only`'s measurement (`run_reward_bench`: 64 pairs of
its prompts and response, median of `repeats` calls after a warm-up), on one shared embedder. The
ratio reported is the median of the per-round ratios new / old (above 1: the new head is slower).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)

    from stars_plugins.benchmarks.strategies import builtin_prompts, run_reward_bench
    from stars_plugins.rewards.harmless import HarmlessReward, SentenceEmbedder

    embedder = SentenceEmbedder()
    heads = {"old": HarmlessReward(args.old, embedder=embedder), "new": HarmlessReward(args.new, embedder=embedder)}
    prompts = builtin_prompts()[:16]  # what `stars bench --score-only` uses by default (--num-prompts 16)
    medians: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for name, reward in heads.items():
            report = run_reward_bench(reward, prompts, batch_size=args.batch, repeats=args.repeats)
            medians[name].append(report["median_seconds"])
    ratios = [n / o for o, n in zip(medians["old"], medians["new"], strict=True)]
    result = {
        "pairs_per_call": args.batch,
        "median_seconds_per_round": medians,
        "ratio_new_over_old_per_round": [round(r, 3) for r in ratios],
        "ratio_new_over_old": round(statistics.median(ratios), 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
