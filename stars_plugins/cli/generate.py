"""`stars generate`: one prompt, printed as it is generated or as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from stars_plugins.cli.common import (
    add_constraint_options,
    call_from_args,
    config_from_args,
    constraint_from_args,
    runtime_from_args,
    stats_line,
)


def run(args: argparse.Namespace) -> int:
    from stars_plugins.prompts import check_prompt

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    check_prompt(prompt)  # arguments first: a mistake is reported before the model loads
    settings = {"strategy": args.strategy, "stop": tuple(args.stop or ()), "constraint": constraint_from_args(args)}
    config_from_args(args, **settings)
    call = call_from_args(args, runtime_from_args(args), **settings)
    if args.stream and not args.json:
        for delta in call.stream(prompt):
            print(delta.text, end="", flush=True)
            result = delta.result
        print()
    else:
        [result] = call.generate([prompt])
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        if not args.stream:
            print(result.text)
        reward = "n/a" if result.reward is None else f"{result.reward:.3f}"
        print(f"\n[{result.strategy}] reward {reward}, {stats_line(result.stats)}", file=sys.stderr)
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    from stars_plugins.decoding import available_strategies

    p.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    p.add_argument("--strategy", "-s", default="stars", choices=available_strategies())
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--stream", action="store_true", help="print segments as they are accepted")
    p.add_argument("--json", action="store_true", help="print the result with its stats as JSON")
    add_constraint_options(p)
