"""What every `stars` subcommand shares: model and decoding options, and turning parsed
arguments into a runtime and a config."""

from __future__ import annotations

import argparse
from typing import Any


def model_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("models")
    group.add_argument(
        "--policy",
        default=None,
        help="hub id, folder or .gguf file (default: embedded SmolLM2-135M), "
        "or a serving engine's URL (several replicas: comma-separated URLs)",
    )
    group.add_argument(
        "--policy-tokenizer",
        default=None,
        help="with a server URL: the served model's tokenizer (hub id, folder or .gguf file)",
    )
    group.add_argument(
        "--engine",
        default=None,
        choices=["vllm", "sglang", "llama.cpp"],
        help="with a server URL: the engine (default: detected); API key from STARS_ENGINE_API_KEY",
    )
    group.add_argument("--reward", default=None, help="built-in reward name, or a classifier folder / hub id")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    return parent


def config_default(field: str) -> Any:
    from stars_plugins.config import StarsConfig

    return StarsConfig.model_fields[field].default


def optional_quantile(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'none', got {text!r}")
    return value


def decoding_options(max_new_tokens: int = 128, horizon: int = 16, candidates: int = 1) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("decoding")
    group.add_argument("--horizon", "-k", type=int, default=horizon, help="segment length K in tokens")
    group.add_argument("--candidates", "-n", type=int, default=candidates, help="candidates per segment (N)")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    group.add_argument("--max-rejections", type=int, default=20)
    group.add_argument(
        "--adaptive-candidates",
        type=int,
        default=config_default("max_adaptive_candidates"),
        help="max_adaptive_candidates: up to this many candidates while a segment keeps being rejected",
    )
    group.add_argument("--target-reward", type=float, default=None, help="r_target (default: the reward's own)")
    group.add_argument(
        "--target-cap-quantile",
        type=optional_quantile,
        default=config_default("target_cap_quantile"),
        help="cap the target at this quantile of the request's own candidate rewards; 'none': fixed",
    )
    group.add_argument("--temperature", type=float, default=1.0, help="0 decodes greedily")
    group.add_argument("--seed", type=int, default=None)
    return parent


def overrides_from_args(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The decoding flags as `StarsConfig` settings (plus `extra`: a command's own settings)."""
    return {
        "horizon": args.horizon,
        "num_candidates": args.candidates,
        "max_new_tokens": args.max_new_tokens,
        "max_rejections": args.max_rejections,
        "target_reward": args.target_reward,
        "temperature": args.temperature,
        "seed": args.seed,
        "max_adaptive_candidates": args.adaptive_candidates,
        "target_cap_quantile": args.target_cap_quantile,
        **extra,
    }


def config_from_args(args: argparse.Namespace, **extra: Any) -> Any:
    """The command's `StarsConfig`, validated through the one request path (`calls.resolve_config`)
    before any model loads, so a bad flag is reported at once."""
    from stars_plugins import calls

    return calls.resolve_config({}, overrides_from_args(args, **extra), owner=f"stars {args.command}")[0]


def call_from_args(args: argparse.Namespace, runtime: Any, **extra: Any) -> Any:
    """The command's `calls.Call` on a loaded runtime (its reward: the runtime's)."""
    from stars_plugins import calls

    return calls.prepare_call(runtime, {}, overrides_from_args(args, **extra), owner=f"stars {args.command}")


def runtime_from_args(args: argparse.Namespace, reward: str | None = None):
    from stars_plugins.runtime import StarsRuntime

    policy = args.policy
    if policy and "," in policy and policy.startswith(("http://", "https://")):
        policy = [url.strip() for url in policy.split(",") if url.strip()]
    return StarsRuntime.from_pretrained(
        policy,
        args.reward or reward,
        device=args.device,
        dtype=args.dtype,
        policy_tokenizer=args.policy_tokenizer,
        engine=args.engine,
    )


def stats_line(stats: Any) -> str:
    return (
        f"{stats.accepted_tokens} tokens, {stats.rounds} rounds, {stats.rejections} rejections, "
        f"{stats.discarded_tokens} discarded, {stats.reward_calls} reward calls, {stats.wall_seconds:.1f}s"
    )


def strategy_list(text: str) -> list[str]:
    from stars_plugins.decoding import available_strategies

    strategies = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in available_strategies()]
    if unknown or not strategies:
        raise ValueError(
            f"unknown strategies {', '.join(unknown) or '(none given)'}; available: {', '.join(available_strategies())}"
        )
    return strategies


def int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{option} takes comma-separated numbers >= 1, got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def add_constraint_options(p: argparse.ArgumentParser) -> None:
    """Structured-output flags (at most one): the output must fit this constraint."""
    group = p.add_argument_group("structured output (one of)").add_mutually_exclusive_group()
    group.add_argument("--json-schema", metavar="FILE", help="a JSON Schema file: the output is JSON valid under it")
    group.add_argument("--json-object", action="store_true", help="the output is a JSON object")
    group.add_argument("--regex", metavar="PATTERN", help="the output matches this regular expression")
    group.add_argument("--choice", action="append", metavar="TEXT", help="the output is one of these (repeatable)")
    group.add_argument("--grammar", metavar="FILE", help="an EBNF grammar file (root rule: root)")


def constraint_from_args(args: argparse.Namespace) -> Any:
    """The `Constraint` the flags ask for, or None; a bad file or constraint raises at once
    (`ConstraintError`, `FileNotFoundError`), before any model loads."""
    from stars_plugins.constraints import Constraint

    if getattr(args, "json_schema", None):
        return Constraint.json_schema(_read(args.json_schema, "--json-schema"))
    if getattr(args, "json_object", False):
        return Constraint.json_object()
    if getattr(args, "regex", None):
        return Constraint.regex(args.regex)
    if getattr(args, "choice", None):
        return Constraint.choice(args.choice)
    if getattr(args, "grammar", None):
        return Constraint.grammar(_read(args.grammar, "--grammar"))
    return None


def _read(path: str, option: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{option}: no such file: {path}") from None
