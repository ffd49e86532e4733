"""The `stars` command: one module per subcommand (`configure(parser)` adds its options, `run(args)`
runs it), over the shared options of `common.py`. Each subcommand imports what it needs only when
it runs, so `stars --help` and `stars generate` load no web framework, plotting or benchmark code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from stars_plugins.cli import bench, demo, eval, generate, serve
from stars_plugins.cli.common import decoding_options, model_options
from stars_plugins.errors import StarsError

#: name -> (module, help, (max_new_tokens, horizon, candidates) defaults)
COMMANDS: dict[str, tuple[ModuleType, str, tuple[int, int, int]]] = {
    "generate": (generate, "generate a response to one prompt", (128, 16, 1)),
    "demo": (demo, "plain sampling and STARS side by side on harmful and benign prompts", (64, 16, 4)),
    "bench": (bench, "throughput, reward and cost of strategies x batch sizes", (64, 16, 1)),
    "eval": (
        eval,
        "refusal, over-refusal, reward and speed of every strategy on a harmful/benign prompt set",
        (128, 16, 1),
    ),
    "serve": (
        serve,
        "an OpenAI-compatible HTTP server (chat/completions, completions, models) over STARS",
        (128, 16, 1),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stars", description="STARS reward-guided decoding")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text, (max_new, horizon, candidates)) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[model_options(), decoding_options(max_new, horizon, candidates)],
        )
        module.configure(p)
        p.set_defaults(handler=module.run)
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
