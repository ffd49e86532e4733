"""Side by side: two `stars eval` runs on the same prompts with two heads of the "harmless" reward
(before and after retraining), per prompt area.

    python -m reward_training.compare_evals eval-old/eval.json eval-new/eval.json [--labels old,new]

Per area and run: plain sampling's and STARS's mean reward (each run under its own head, so the
gain is what STARS got out of that reward), refusal rates, and two relevance measures of the
answers: MiniLM cosine of prompt and response, and the share of the prompt's content words the
answer uses (no model involved). Plain sampling is seeded, so its text is the same in both runs
and only its reward differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _area(report: dict[str, Any], strategy: str, area: str) -> dict[str, Any] | None:
    for s in report["strategies"]:
        if s["strategy"] == strategy:
            return s.get("by_area", {}).get(area)
    return None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def side_by_side(reports: list[dict[str, Any]], labels: list[str]) -> str:
    areas = list(reports[0].get("areas", {}))
    lines = [
        "| area | prompts | head | vanilla reward | STARS reward | STARS gain | refusal vanilla / STARS "
        "| relevance vanilla / STARS | prompt-word recall vanilla / STARS |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for area in areas:
        for report, label in zip(reports, labels, strict=True):
            v, s = _area(report, "vanilla", area), _area(report, "stars", area)
            if v is None or s is None:
                continue
            lines.append(
                f"| {area} | {report['areas'][area]} | {label} | {v['mean_reward']:.2f} | {s['mean_reward']:.2f} "
                f"| {s['mean_reward'] - v['mean_reward']:+.2f} | {_pct(v['refusal_rate'])} / {_pct(s['refusal_rate'])} "
                f"| {v['relevance']:.3f} / {s['relevance']:.3f} "
                f"| {v['prompt_word_recall']:.3f} / {s['prompt_word_recall']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", metavar="eval.json")
    parser.add_argument("--labels", default=None, help="comma-separated, one per report (default: the head files)")
    args = parser.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    labels = args.labels.split(",") if args.labels else [Path(r.get("reward_head") or "?").name for r in reports]
    if len(labels) != len(reports):
        parser.error("give one label per report")
    prompt_sets = [[o["prompt"] for o in r["outputs"]["vanilla"]] for r in reports]
    if any(p != prompt_sets[0] for p in prompt_sets):
        parser.error("the reports were not run on the same prompts")
    print(side_by_side(reports, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
