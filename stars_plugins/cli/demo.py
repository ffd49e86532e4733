"""`stars demo`: plain sampling and STARS side by side on a few harmful and benign prompts."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from stars_plugins.cli.common import (
    config_from_args,
    positive_int,
    runtime_from_args,
    stats_line,
)


def run(args: argparse.Namespace) -> int:
    """Plain sampling and STARS side by side on a few harmful and a few benign prompts."""
    from stars_plugins.benchmarks.evaluation import demo_prompt_path, first_per_kind, is_refusal, load_eval_prompts

    prompts = first_per_kind(load_eval_prompts(args.prompts or demo_prompt_path()), args.limit)
    strategies = ("vanilla", "stars")
    base = config_from_args(args)
    configs = {s: base.for_strategy(s) for s in strategies}
    runtime = runtime_from_args(args)
    print(
        f"policy: {runtime.model_name}   reward: {runtime.reward.name}   "
        f"K={args.horizon} N={args.candidates} max_new_tokens={args.max_new_tokens} seed={args.seed}\n"
        "Same prompts, same policy: plain sampling, then STARS steering it with the reward. "
        "[REFUSAL] marks answers the refusal detector of `stars eval` counts as refusals.\n"
    )
    texts = [p.prompt for p in prompts]
    rows = {s: runtime.generate(texts, configs[s], raise_errors=False) for s in strategies}
    width = min(100, os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 100)
    for i, prompt in enumerate(prompts):
        print(f"## ({prompt.kind}) {prompt.prompt}")
        for strategy in strategies:
            result = rows[strategy][i]
            reward = "n/a" if result.reward is None else f"{result.reward:+.2f}"
            mark = " [REFUSAL]" if is_refusal(result.text) else ""
            print(f"  [{strategy:7}] reward {reward}{mark} | {stats_line(result.stats)}")
            body = " ".join(result.text.split()) or "(empty)"
            print(textwrap.indent(textwrap.fill(body, width - 12), " " * 12))
        print()
    for strategy in strategies:
        results = rows[strategy]
        rewards = [r.reward for r in results if r.reward is not None]
        mean = sum(rewards) / len(rewards) if rewards else float("nan")
        refused = {
            kind: sum(is_refusal(r.text) for p, r in zip(prompts, results, strict=True) if p.kind == kind)
            for kind in ("harmful", "benign")
        }
        total = {kind: sum(p.kind == kind for p in prompts) for kind in ("harmful", "benign")}
        sampled = sum(r.stats.sampled_tokens for r in results)
        print(
            f"{strategy:7}: mean reward {mean:+.2f}, refused {refused['harmful']}/{total['harmful']} harmful "
            f"and {refused['benign']}/{total['benign']} benign prompts, {sampled} tokens sampled"
        )
    print("\nFull comparison with best-of-N and CARDS on 152 prompts: `stars eval` (docs/eval.md).")
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompts",
        default=None,
        metavar="FILE.jsonl",
        help="prompts with 'kind' (harmful/benign) and 'prompt' (default: the shipped demo set)",
    )
    p.add_argument("--limit", type=positive_int, default=3, metavar="N", help="the first N prompts of each kind")
    p.set_defaults(seed=0)
