"""`stars bench`: throughput, reward and cost of strategies x batch sizes, and the other benches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stars_plugins.cli.common import (
    add_constraint_options,
    config_from_args,
    constraint_from_args,
    int_list,
    positive_int,
    runtime_from_args,
    strategy_list,
)


def run(args: argparse.Namespace) -> int:
    if args.serve:  # load-tests a `stars serve` child process; loads no model here
        from stars_plugins.benchmarks.serve_load import bench_serve_command

        return bench_serve_command(args)
    if args.memory:
        from stars_plugins.benchmarks.memory_loop import bench_memory_command

        return bench_memory_command(args, config_from_args, runtime_from_args)
    from stars_plugins.benchmarks.strategies import builtin_prompts, effective_batch_sizes, load_prompt_file, run_bench

    constraint = constraint_from_args(args)  # a bad constraint is reported before any model loads
    if args.structured:
        from stars_plugins.benchmarks.structured import run_structured_command

        base = config_from_args(args)
        return run_structured_command(args, runtime_from_args(args), base)
    if args.tools:
        return _bench_tools(args)
    if args.decode_step:
        return _bench_decode_step(args)

    if args.overhead or args.reward_cache:
        from stars_plugins.benchmarks.speed import run_speed_bench

        return run_speed_bench(args, constraint)
    prompts = load_prompt_file(args.prompts) if args.prompts else builtin_prompts()
    prompts = prompts[: args.num_prompts]
    if not prompts:
        raise ValueError("no prompts to run; check --prompts and --num-prompts")
    if args.score_only:
        return _bench_reward(args, prompts)
    strategies = strategy_list(args.strategies)
    config = config_from_args(args, constraint=constraint)
    asked = int_list(args.batch_sizes or "1,16", "--batch-sizes")
    batch_sizes = effective_batch_sizes(asked, len(prompts))
    if batch_sizes != asked:
        print(f"note: {len(prompts)} prompts, so batch sizes {asked} run as {batch_sizes}", file=sys.stderr)
    runtime = runtime_from_args(args)
    if args.concurrent:
        return _bench_concurrent(args, runtime, prompts, config)
    if args.mixed:
        return _bench_mixed(args, runtime, prompts, config)
    report = run_bench(
        runtime,
        prompts,
        strategies=strategies,
        batch_sizes=batch_sizes,
        config=config,
        progress=not args.no_progress,
    )
    print(report["table"])
    print()
    for name, value in report["comparisons"].items():
        print(f"{name}: {value}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {output}")
    return 0


def _bench_concurrent(args: argparse.Namespace, runtime: Any, prompts: list[str], first: Any) -> int:
    from stars_plugins.benchmarks.strategies import concurrent_table, run_concurrent

    second = first.updated(horizon=max(1, args.horizon // 2), temperature=0.7)  # another group
    report = run_concurrent(runtime, prompts, [first, second], callers=args.callers)
    print(concurrent_table(report))
    print(f"\nconcurrent vs sequential throughput: {report['throughput_ratio']}x")
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/concurrent.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _bench_tools(args: argparse.Namespace) -> int:
    """Tool calling: plain, constrained plain, constrained STARS (and with other tools offered) on the tool tasks."""
    from stars_plugins.benchmarks.tools import load_tool_tasks, run_tool_bench

    tasks = load_tool_tasks(args.tool_tasks)
    if args.limit:
        tasks = _spread(tasks, args.limit)
    config = config_from_args(args)
    runtime = runtime_from_args(args)
    print(f"{len(tasks)} tool tasks on {runtime.model_name}, reward {runtime.reward.name}", flush=True)
    report = run_tool_bench(runtime, tasks, config, seed=config.seed or 0)
    print(report["table"])
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/tools.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _bench_mixed(args: argparse.Namespace, runtime: Any, prompts: list[str], base: Any) -> int:
    from stars_plugins.benchmarks.mixed import mixed_table, run_mixed

    rewards = [r.strip() for r in args.mixed_rewards.split(",") if r.strip()]
    report = run_mixed(
        runtime,
        prompts,
        base,
        callers=args.callers,
        horizons=int_list(args.mixed_horizons, "--mixed-horizons"),
        rewards=rewards,
        uniform_horizon=base.horizon,
        heartbeats=[h.strip() for h in args.heartbeats.split(",") if h.strip()],
        grouped=not args.no_grouped,
    )
    print(mixed_table(report))
    print(
        f"\nmixed vs uniform: {report['mixed_vs_uniform']}x, mixed vs one after another: "
        f"{report['mixed_vs_sequential']}x, p95/p50 latency: {report['p95_over_p50']}, "
        f"same tokens in every mixed run: {report['same_tokens_in_every_mixed_run']}"
    )
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/mixed.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _bench_decode_step(args: argparse.Namespace) -> int:
    from stars_plugins.benchmarks.decode_step import decode_step_table, run_decode_step

    runtime = runtime_from_args(args)
    sizes = int_list(args.batch_sizes, "--batch-sizes") if args.batch_sizes else [4, 16, 48]
    report = run_decode_step(runtime.policy, rows=sizes, progress=(lambda _: None) if args.no_progress else print)
    print(decode_step_table(report))
    output = Path(args.output).with_name("decode_step.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _spread(tasks: list[Any], limit: int) -> list[Any]:
    """`limit` tasks taken evenly across the file (call tasks and safety tasks both kept)."""
    if limit >= len(tasks):
        return tasks
    step = len(tasks) / limit
    return [tasks[int(i * step)] for i in range(limit)]


def _bench_reward(args: argparse.Namespace, prompts: list[str]) -> int:
    """The reward model alone: pairs per second at one batch size (no policy is loaded)."""
    from stars_plugins.benchmarks.strategies import run_reward_bench
    from stars_plugins.rewards import load_reward

    reward = load_reward(args.reward or "harmless", device=args.device)
    report = run_reward_bench(reward, prompts, batch_size=args.score_batch, repeats=args.score_repeats)
    print(
        f"reward {report['reward']}: {report['pairs']} pairs per call, median {report['median_seconds']:.3f} s "
        f"per call over {report['repeats']} calls, {report['pairs_per_second']:.0f} pairs/s"
    )
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/reward.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategies", default="vanilla,stars,cards,best_of_n", help="comma-separated")
    p.add_argument(
        "--batch-sizes", default=None, help="comma-separated (default 1,16; --overhead: 32,64; --reward-cache: 16)"
    )
    p.add_argument("--prompts", default=None, help="prompt file (.txt one per line, or .jsonl with 'prompt')")
    p.add_argument("--num-prompts", type=positive_int, default=16)
    p.add_argument("--output", default="bench-results/bench.json")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--concurrent",
        action="store_true",
        help="callers issuing requests at once (half with --horizon, half with half of it) "
        "against the same requests one after another",
    )
    p.add_argument("--callers", type=positive_int, default=16, help="with --concurrent or --mixed: how many callers")
    p.add_argument(
        "--mixed",
        action="store_true",
        help="callers with mixed horizons x rewards on one policy, against the same callers with one "
        "horizon (--horizon) and one reward, and one after another; heartbeat rules side by side",
    )
    p.add_argument("--mixed-horizons", default="4,8,16,32", help="with --mixed: the callers' horizons")
    p.add_argument("--mixed-rewards", default="harmless,sentiment", help="with --mixed: the callers' rewards")
    p.add_argument(
        "--heartbeats", default="next,gcd,step,longest", help="with --mixed: heartbeat rules to run (first: main)"
    )
    p.add_argument("--no-grouped", action="store_true", help="with --mixed: skip the grouped-design reference run")
    p.add_argument(
        "--score-only",
        action="store_true",
        help="time the reward model alone (--reward, default harmless) on the prompts; no policy",
    )
    p.add_argument("--score-batch", type=positive_int, default=64, help="with --score-only: pairs per call")
    p.add_argument("--score-repeats", type=positive_int, default=5, help="with --score-only: timed calls")
    p.add_argument(
        "--overhead",
        action="store_true",
        help="engine overhead: STARS vs transformers generate on a tiny Llama from a config, "
        "top_k in {0,40} x top_p in {1,0.9} (batch sizes default to 32,64)",
    )
    p.add_argument(
        "--decode-step",
        action="store_true",
        help="one decode step of the policy's batch by rows (--batch-sizes, default 4,16,48) and cached "
        "columns, KV cache appended in place vs transformers' concatenating cache",
    )
    p.add_argument(
        "--reward-cache",
        action="store_true",
        help="reward phase of a causal reward model with and without its prefix cache",
    )
    p.add_argument(
        "--tools",
        action="store_true",
        help="tool calling: plain, constrained plain and constrained STARS on the tool tasks "
        "(valid call, right function, arguments; destructive calls on harmful vs benign requests)",
    )
    p.add_argument("--tool-tasks", default=None, help="with --tools: a tasks .jsonl (default: the built-in 50)")
    p.add_argument(
        "--structured",
        action="store_true",
        help="structured extraction (issue 18): schema-valid rate and field accuracy of plain sampling, "
        "constrained plain sampling and constrained STARS on the bundled extraction prompts",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="with --structured: the first N prompts only; with --tools: N tasks spread evenly over the file",
    )
    add_constraint_options(p)
    from stars_plugins.benchmarks.memory_loop import add_bench_memory_arguments
    from stars_plugins.benchmarks.serve_load import add_bench_serve_arguments

    add_bench_serve_arguments(p)
    add_bench_memory_arguments(p)
