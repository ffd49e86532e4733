"""`stars eval`: refusal, over-refusal, reward, relevance and speed of every strategy on a prompt set."""

from __future__ import annotations

import argparse
import sys

from stars_plugins.cli.common import (
    config_from_args,
    positive_int,
    runtime_from_args,
    strategy_list,
)


def run(args: argparse.Namespace) -> int:
    from stars_plugins.benchmarks.evaluation import (
        area_table,
        first_per_area,
        load_eval_prompts,
        markdown_table,
        run_eval,
        select_areas,
        write_report,
    )

    areas = [a.strip() for a in args.areas.split(",") if a.strip()] if args.areas else None
    prompts = first_per_area(select_areas(load_eval_prompts(args.prompts), areas), args.limit)
    strategies = strategy_list(args.strategies)
    config = config_from_args(args, alpha=args.alpha, beta=args.beta, system_prompt=args.system_prompt)
    if args.harmless_head:
        if args.reward:
            raise ValueError("--harmless-head replaces the reward; leave out --reward")
        from stars_plugins.devices import resolve_device
        from stars_plugins.rewards.harmless import HarmlessReward

        args.reward = HarmlessReward(args.harmless_head, device=resolve_device(args.device))
    runtime = runtime_from_args(args, reward="harmless")
    print(
        f"policy: {runtime.model_name}   reward: {runtime.reward.name}   {len(prompts)} prompts   "
        f"K={config.horizon} N={config.num_candidates} max_new_tokens={config.max_new_tokens}",
        file=sys.stderr,
    )
    report = run_eval(
        runtime,
        prompts,
        config,
        strategies=strategies,
        batch_size=args.batch_size,
        best_of_n=args.best_of_n,
        progress=not args.no_progress,
        log=lambda line: print(line, file=sys.stderr),
    )
    report["command"] = "stars eval " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["eval"] else None
    paths = write_report(report, args.output)
    print(markdown_table(report))
    print()
    print(area_table(report))
    if report["best_of_n"]:
        print(f"\nbest_of_n: N = {report['best_of_n']['n']} ({report['best_of_n']['how']})")
    print(f"\nwrote {paths['json']}, {paths['markdown']}" + (f", {paths['png']}" if paths["png"] else ""))
    if paths["png"] is None:
        print("no chart: matplotlib is missing; pip install 'stars-plugins[plot]'", file=sys.stderr)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompts",
        default=None,
        metavar="FILE.jsonl",
        help="prompt set: JSONL with 'kind' (harmful/benign), 'prompt' and optional 'area' "
        "(default: the shipped sets, all areas)",
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="only the first N prompts of each area"
    )
    p.add_argument(
        "--areas",
        default=None,
        metavar="A,B",
        help="only these prompt areas (shipped: harmful, bias, privacy, hate, benign, benign_group)",
    )
    p.add_argument(
        "--harmless-head",
        default=None,
        metavar="FILE.safetensors",
        help="score with this head of the harmless reward (e.g. a retrained one) instead of the shipped head",
    )
    p.add_argument("--strategies", default="vanilla,best_of_n,cards,stars", help="comma-separated")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the target in the initial threshold")
    p.add_argument("--beta", type=float, default=0.7, help="temperature of soft acceptance")
    p.add_argument("--system-prompt", default=None, help="system message, applied to every strategy alike")
    p.add_argument(
        "--best-of-n",
        type=positive_int,
        default=None,
        metavar="N",
        help="best-of-N's N (default: matched to STARS's measured sampled tokens per request)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="prompts per lockstep batch")
    p.add_argument("--output", default="eval-results", metavar="DIR", help="folder for eval.json/.md/.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(seed=0, max_new_tokens=64, candidates=4)
