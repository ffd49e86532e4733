"""`python -m reward_training`: retrain the "harmless" reward head from the project's preference data."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

#: Where training writes when no --output is given: a new folder in the working directory, never the
#: shipped weights inside the package.
DEFAULT_OUTPUT = "harmless-reward"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reward_training", description=__doc__)
    p.add_argument(
        "--data",
        action="append",
        metavar="PATH",
        help="preference data file (JSONL), repeatable; the first one is the reference set whose "
        "held-out accuracy is reported (default: the project's hand-written and on-policy pairs)",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help=f"folder (or .safetensors path) for the head; default: ./{DEFAULT_OUTPUT} "
        "(the shipped weights are never overwritten unless you name their folder)",
    )
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--embedding-cache",
        default=None,
        metavar="FILE",
        help="keep the sentence embeddings in this file between runs (development; same result without it)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        print("python -m reward_training: error: --epochs must be at least 1", file=sys.stderr)
        return 2
    from reward_training.train import train_harmless_head

    output = Path(args.output or DEFAULT_OUTPUT)
    try:
        report = train_harmless_head(
            args.data or None,
            output,
            seed=args.seed,
            epochs=args.epochs,
            embedding_cache=args.embedding_cache,
            log=lambda line: print(line, file=sys.stderr),
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"python -m reward_training: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    head = output if output.suffix == ".safetensors" else output / "harmless_head.safetensors"
    print(
        f"wrote {head}; use it with StarsRuntime.from_pretrained(reward=HarmlessReward({str(head)!r})) "
        "(from stars_plugins.rewards.harmless import HarmlessReward)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
