"""The `stars` command: generate, demo, bench (and more, registered by later modules)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stars_plugins.errors import StarsError


def _model_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("models")
    group.add_argument("--policy", default=None, help="hub id, folder or .gguf file (default: embedded SmolLM2-135M), "
                       "or a serving engine's URL (several replicas: comma-separated URLs)")
    group.add_argument("--policy-tokenizer", default=None,
                       help="with a server URL: the served model's tokenizer (hub id, folder or .gguf file)")
    group.add_argument("--engine", default=None, choices=["vllm", "sglang", "llama.cpp"],
                       help="with a server URL: the engine (default: detected); API key from STARS_ENGINE_API_KEY")
    group.add_argument("--reward", default=None, help="built-in reward name, or a classifier folder / hub id")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    return parent


def _default(field: str) -> Any:
    from stars_plugins.config import StarsConfig

    return StarsConfig.model_fields[field].default


def _optional_quantile(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'none', got {text!r}")
    return value


def _decoding_options(max_new_tokens: int = 128, horizon: int = 16, candidates: int = 1) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("decoding")
    group.add_argument("--horizon", "-k", type=int, default=horizon, help="segment length K in tokens")
    group.add_argument("--candidates", "-n", type=int, default=candidates, help="candidates per segment (N)")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    group.add_argument("--max-rejections", type=int, default=20)
    group.add_argument("--adaptive-candidates", type=int, default=_default("max_adaptive_candidates"),
                       help="max_adaptive_candidates: up to this many candidates while a segment keeps being rejected")
    group.add_argument("--target-reward", type=float, default=None, help="r_target (default: the reward's own)")
    group.add_argument("--target-cap-quantile", type=_optional_quantile, default=_default("target_cap_quantile"),
                       help="cap the target at this quantile of the request's own candidate rewards; 'none': fixed")
    group.add_argument("--temperature", type=float, default=1.0, help="0 decodes greedily")
    group.add_argument("--seed", type=int, default=None)
    return parent


def _config(args: argparse.Namespace, **extra: Any):
    from stars_plugins.config import StarsConfig

    return StarsConfig(
        horizon=args.horizon, num_candidates=args.candidates, max_new_tokens=args.max_new_tokens,
        max_rejections=args.max_rejections, target_reward=args.target_reward, temperature=args.temperature,
        seed=args.seed, max_adaptive_candidates=args.adaptive_candidates,
        target_cap_quantile=args.target_cap_quantile, **extra,
    )


def _runtime(args: argparse.Namespace, reward: str | None = None):
    from stars_plugins.runtime import StarsRuntime

    policy = args.policy
    if policy and "," in policy and policy.startswith(("http://", "https://")):
        policy = [url.strip() for url in policy.split(",") if url.strip()]
    return StarsRuntime.from_pretrained(policy, args.reward or reward, device=args.device, dtype=args.dtype,
                                        policy_tokenizer=args.policy_tokenizer, engine=args.engine)


def _stats_line(stats: Any) -> str:
    return (
        f"{stats.accepted_tokens} tokens, {stats.rounds} rounds, {stats.rejections} rejections, "
        f"{stats.discarded_tokens} discarded, {stats.reward_calls} reward calls, {stats.wall_seconds:.1f}s"
    )


# ---------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    from stars_plugins.policy.prompts import check_prompt

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    check_prompt(prompt)  # arguments first: a mistake is reported before the model loads
    config = _config(args, strategy=args.strategy, stop=tuple(args.stop or ()))
    runtime = _runtime(args)
    if args.stream and not args.json:
        stream = runtime.stream(prompt, config)
        for segment in stream:
            print(segment.text, end="", flush=True)
        print()
        result = stream.result
    else:
        [result] = runtime.generate([prompt], config)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        if not args.stream:
            print(result.text)
        reward = "n/a" if result.reward is None else f"{result.reward:.3f}"
        print(f"\n[{result.strategy}] reward {reward}, {_stats_line(result.stats)}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    """Plain sampling and STARS side by side on a few harmful and a few benign prompts."""
    from stars_plugins.evaluation import demo_prompt_path, first_per_kind, is_refusal, load_eval_prompts

    prompts = first_per_kind(load_eval_prompts(args.prompts or demo_prompt_path()), args.limit)
    strategies = ("vanilla", "stars")
    configs = {s: _config(args, strategy=s) for s in strategies}
    runtime = _runtime(args)
    print(f"policy: {runtime.model_name}   reward: {runtime.reward.name}   "
          f"K={args.horizon} N={args.candidates} max_new_tokens={args.max_new_tokens} seed={args.seed}\n"
          "Same prompts, same policy: plain sampling, then STARS steering it with the reward. "
          "[REFUSAL] marks answers the refusal detector of `stars eval` counts as refusals.\n")
    texts = [p.prompt for p in prompts]
    rows = {s: runtime.generate(texts, configs[s], raise_errors=False) for s in strategies}
    width = min(100, os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 100)
    for i, prompt in enumerate(prompts):
        print(f"## ({prompt.kind}) {prompt.prompt}")
        for strategy in strategies:
            result = rows[strategy][i]
            reward = "n/a" if result.reward is None else f"{result.reward:+.2f}"
            mark = " [REFUSAL]" if is_refusal(result.text) else ""
            print(f"  [{strategy:7}] reward {reward}{mark} | {_stats_line(result.stats)}")
            body = " ".join(result.text.split()) or "(empty)"
            print(textwrap.indent(textwrap.fill(body, width - 12), " " * 12))
        print()
    for strategy in strategies:
        results = rows[strategy]
        rewards = [r.reward for r in results if r.reward is not None]
        mean = sum(rewards) / len(rewards) if rewards else float("nan")
        refused = {kind: sum(is_refusal(r.text) for p, r in zip(prompts, results, strict=True) if p.kind == kind)
                   for kind in ("harmful", "benign")}
        total = {kind: sum(p.kind == kind for p in prompts) for kind in ("harmful", "benign")}
        sampled = sum(r.stats.sampled_tokens for r in results)
        print(f"{strategy:7}: mean reward {mean:+.2f}, refused {refused['harmful']}/{total['harmful']} harmful "
              f"and {refused['benign']}/{total['benign']} benign prompts, {sampled} tokens sampled")
    print("\nFull comparison with best-of-N and CARDS on 152 prompts: `stars eval` (docs/eval.md).")
    return 0


# ---------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    if args.serve:  # load-tests a `stars serve` child process; loads no model here
        from stars_plugins.server.loadtest import bench_serve_command

        return bench_serve_command(args)
    from stars_plugins.bench import builtin_prompts, effective_batch_sizes, load_prompt_file, run_bench

    if args.overhead or args.reward_cache:
        from stars_plugins.bench_speed import run_speed_bench

        return run_speed_bench(args)
    prompts = load_prompt_file(args.prompts) if args.prompts else builtin_prompts()
    prompts = prompts[: args.num_prompts]
    if not prompts:
        raise ValueError("no prompts to run; check --prompts and --num-prompts")
    if args.score_only:
        return _bench_reward(args, prompts)
    strategies = _strategy_list(args.strategies)
    config = _config(args)
    asked = _int_list(args.batch_sizes or "1,16", "--batch-sizes")
    batch_sizes = effective_batch_sizes(asked, len(prompts))
    if batch_sizes != asked:
        print(f"note: {len(prompts)} prompts, so batch sizes {asked} run as {batch_sizes}", file=sys.stderr)
    runtime = _runtime(args)
    if args.concurrent:
        return _bench_concurrent(args, runtime, prompts, config)
    report = run_bench(
        runtime, prompts, strategies=strategies, batch_sizes=batch_sizes, config=config,
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
    from stars_plugins.bench import concurrent_table, run_concurrent

    second = first.updated(horizon=max(1, args.horizon // 2), temperature=0.7)  # another group
    report = run_concurrent(runtime, prompts, [first, second], callers=args.callers)
    print(concurrent_table(report))
    print(f"\nconcurrent vs sequential throughput: {report['throughput_ratio']}x")
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/concurrent.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _bench_reward(args: argparse.Namespace, prompts: list[str]) -> int:
    """The reward model alone: pairs per second at one batch size (no policy is loaded)."""
    from stars_plugins.bench import run_reward_bench
    from stars_plugins.rewards import load_reward

    reward = load_reward(args.reward or "harmless", device=args.device)
    report = run_reward_bench(reward, prompts, batch_size=args.score_batch, repeats=args.score_repeats)
    print(f"reward {report['reward']}: {report['pairs']} pairs per call, median {report['median_seconds']:.3f} s "
          f"per call over {report['repeats']} calls, {report['pairs_per_second']:.0f} pairs/s")
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/reward.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _strategy_list(text: str) -> list[str]:
    from stars_plugins.decoding import available_strategies

    strategies = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in available_strategies()]
    if unknown or not strategies:
        raise ValueError(f"unknown strategies {', '.join(unknown) or '(none given)'}; "
                         f"available: {', '.join(available_strategies())}")
    return strategies


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{option} takes comma-separated numbers >= 1, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


# ---------------------------------------------------------------------------- train-reward
#: Where `stars train-reward` writes when no --output is given: a new folder in the working directory,
#: never the shipped weights inside the installed package.
DEFAULT_TRAIN_OUTPUT = "harmless-reward"


def cmd_train_reward(args: argparse.Namespace) -> int:
    from stars_plugins.rewards.training import train_harmless_head

    output = Path(args.output or DEFAULT_TRAIN_OUTPUT)
    report = train_harmless_head(
        args.data or None, output, seed=args.seed, epochs=args.epochs,
        log=lambda line: print(line, file=sys.stderr), progress=not args.no_progress,
    )
    print(json.dumps(report.as_dict(), indent=2))
    head = output if output.suffix == ".safetensors" else output / "harmless_head.safetensors"
    print(f"wrote {head}; use it with StarsRuntime.from_pretrained(reward=HarmlessReward({str(head)!r})) "
          "(from stars_plugins.rewards.harmless import HarmlessReward)", file=sys.stderr)
    return 0


def _train_reward_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", metavar="PATH",
                   help="preference data file (JSONL), repeatable; the first one is the reference set whose "
                        "held-out accuracy is reported (default: the shipped hand-written and on-policy pairs)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help=f"folder (or .safetensors path) for the head; default: ./{DEFAULT_TRAIN_OUTPUT} "
                        "(the shipped weights are never overwritten unless you name their folder)")
    p.add_argument("--epochs", type=_positive_int, default=40)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(seed=0)


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from stars_plugins.evaluation import first_per_kind, load_eval_prompts, markdown_table, run_eval, write_report

    prompts = first_per_kind(load_eval_prompts(args.prompts), args.limit)
    strategies = _strategy_list(args.strategies)
    config = _config(args, alpha=args.alpha, beta=args.beta, system_prompt=args.system_prompt)
    runtime = _runtime(args, reward="harmless")
    print(f"policy: {runtime.model_name}   reward: {runtime.reward.name}   {len(prompts)} prompts   "
          f"K={config.horizon} N={config.num_candidates} max_new_tokens={config.max_new_tokens}", file=sys.stderr)
    report = run_eval(
        runtime, prompts, config, strategies=strategies, batch_size=args.batch_size, best_of_n=args.best_of_n,
        progress=not args.no_progress, log=lambda line: print(line, file=sys.stderr),
    )
    report["command"] = "stars eval " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["eval"] else None
    paths = write_report(report, args.output)
    print(markdown_table(report))
    if report["best_of_n"]:
        print(f"\nbest_of_n: N = {report['best_of_n']['n']} ({report['best_of_n']['how']})")
    print(f"\nwrote {paths['json']}, {paths['markdown']}" + (f", {paths['png']}" if paths["png"] else ""))
    if paths["png"] is None:
        print("no chart: matplotlib is missing; pip install 'stars-plugins[plot]'", file=sys.stderr)
    return 0


def _eval_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", default=None, metavar="FILE.jsonl",
                   help="prompt set: JSONL with 'kind' (harmful/benign) and 'prompt' (default: the shipped eval set)")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="only the first N prompts of each kind")
    p.add_argument("--strategies", default="vanilla,best_of_n,cards,stars", help="comma-separated")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the target in the initial threshold")
    p.add_argument("--beta", type=float, default=0.7, help="temperature of soft acceptance")
    p.add_argument("--system-prompt", default=None, help="system message, applied to every strategy alike")
    p.add_argument("--best-of-n", type=_positive_int, default=None, metavar="N",
                   help="best-of-N's N (default: matched to STARS's measured sampled tokens per request)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="prompts per lockstep batch")
    p.add_argument("--output", default="eval-results", metavar="DIR", help="folder for eval.json/.md/.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(seed=0, max_new_tokens=64, candidates=4)


# ---------------------------------------------------------------------------- wiring
Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _generate_parser(p: argparse.ArgumentParser) -> None:
    from stars_plugins.decoding import available_strategies

    p.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    p.add_argument("--strategy", "-s", default="stars", choices=available_strategies())
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--stream", action="store_true", help="print segments as they are accepted")
    p.add_argument("--json", action="store_true", help="print the result with its stats as JSON")


def _demo_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", default=None, metavar="FILE.jsonl",
                   help="prompts with 'kind' (harmful/benign) and 'prompt' (default: the shipped demo set)")
    p.add_argument("--limit", type=_positive_int, default=3, metavar="N", help="the first N prompts of each kind")
    p.set_defaults(seed=0)


def _bench_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategies", default="vanilla,stars,cards,best_of_n", help="comma-separated")
    p.add_argument("--batch-sizes", default=None,
                   help="comma-separated (default 1,16; --overhead: 32,64; --reward-cache: 16)")
    p.add_argument("--prompts", default=None, help="prompt file (.txt one per line, or .jsonl with 'prompt')")
    p.add_argument("--num-prompts", type=_positive_int, default=16)
    p.add_argument("--output", default="bench-results/bench.json")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--concurrent", action="store_true",
                   help="callers issuing requests at once (half with --horizon, half with half of it) "
                        "against the same requests one after another")
    p.add_argument("--callers", type=_positive_int, default=16, help="with --concurrent: how many callers")
    p.add_argument("--score-only", action="store_true",
                   help="time the reward model alone (--reward, default harmless) on the prompts; no policy")
    p.add_argument("--score-batch", type=_positive_int, default=64, help="with --score-only: pairs per call")
    p.add_argument("--score-repeats", type=_positive_int, default=5, help="with --score-only: timed calls")
    p.add_argument("--overhead", action="store_true",
                   help="engine overhead: STARS vs transformers generate on a tiny Llama from a config, "
                        "top_k in {0,40} x top_p in {1,0.9} (batch sizes default to 32,64)")
    p.add_argument("--reward-cache", action="store_true",
                   help="reward phase of a causal reward model with and without its prefix cache")
    from stars_plugins.server.loadtest import add_bench_serve_arguments

    add_bench_serve_arguments(p)


# ---------------------------------------------------------------------------- serve
def _serve_parser(p: argparse.ArgumentParser) -> None:
    from stars_plugins.server.command import add_serve_arguments

    add_serve_arguments(p)


def cmd_serve(args: argparse.Namespace) -> int:
    from stars_plugins.server.command import serve_command

    return serve_command(args)


COMMANDS: list[Command] = [
    ("generate", "generate a response to one prompt", _generate_parser, cmd_generate),
    ("demo", "plain sampling and STARS side by side on harmful and benign prompts", _demo_parser, cmd_demo),
    ("bench", "throughput, reward and cost of strategies x batch sizes", _bench_parser, cmd_bench),
    ("train-reward", "train the \"harmless\" reward head from preference data", _train_reward_parser,
     cmd_train_reward),
    ("eval", "refusal, over-refusal, reward and speed of every strategy on a harmful/benign prompt set",
     _eval_parser, cmd_eval),
    ("serve", "an OpenAI-compatible HTTP server (chat/completions, completions, models) over STARS", _serve_parser,
     cmd_serve),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stars", description="STARS reward-guided decoding")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {"demo": (64, 16, 4), "bench": (64, 16, 1)}
    for name, help_text, configure, handler in COMMANDS:
        max_new, horizon, candidates = defaults.get(name, (128, 16, 1))
        p = sub.add_parser(
            name, help=help_text, description=help_text,
            parents=[_model_options(), _decoding_options(max_new, horizon, candidates)],
        )
        configure(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # hub and loading bars would drown the command's own output
    try:
        return args.handler(args)
    except (StarsError, FileNotFoundError, ValueError) as exc:
        print(f"stars {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
