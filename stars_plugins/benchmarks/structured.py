"""`stars bench --structured` (issue 18): structured extraction on the bundled prompts.

`data/structured_extraction.jsonl` holds hand-written extraction prompts (people, orders, events,
products, flights, books, reviews, jobs, weather, contacts), each with its JSON Schema and the
field values a correct answer has. Three arms run on the same prompts and seed:
- plain sampling (`vanilla`, no constraint: the prompt names the fields, nothing enforces them);
- constrained plain sampling (`vanilla` + `Constraint.json_schema(schema)`);
- constrained STARS (`stars` + the same constraint, the runtime's reward).

Reported per arm: schema-valid rate (the whole text `json.loads` and validates under the schema),
field accuracy (share of expected fields with the right value: strings compared case- and
space-insensitively, numbers as numbers; an answer that does not parse scores 0 on every field;
for plain sampling the first `{...}` in the text is also tried, to be generous to it), finish
reasons, tokens and wall time. Prompts of one domain share a schema and run as one batch.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from typing import Any

ARMS = (
    ("plain sampling", "vanilla", False),
    ("constrained plain sampling", "vanilla", True),
    ("constrained STARS", "stars", True),
)


def load_extraction_prompts(limit: int | None = None) -> list[dict[str, Any]]:
    text = resources.files("stars_plugins.benchmarks").joinpath("data", "structured_extraction.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.casefold().split())
    return value


def field_matches(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    return _norm(got) == _norm(want)


def parse_answer(text: str, lenient: bool) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if not lenient:
            return None
    match = re.search(r"\{.*?\}", text, flags=re.S)
    if match:
        try:
            return json.loads(match.group(0))
        except json.JSONDecodeError:
            return None
    return None


def score_answer(text: str, schema: dict[str, Any], expected: dict[str, Any], lenient: bool) -> tuple[bool, int]:
    """(schema-valid, fields right) for one answer."""
    import jsonschema

    valid = False
    try:
        jsonschema.validate(json.loads(text), schema)
        valid = True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        pass
    answer = parse_answer(text, lenient)
    if not isinstance(answer, dict):
        return valid, 0
    return valid, sum(1 for k, v in expected.items() if k in answer and field_matches(answer[k], v))


def run_structured(
    runtime: Any, rows: Sequence[dict[str, Any]], base: Any, *, progress: bool = True, progress_lines: bool = True
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from stars_plugins.constraints import Constraint

    domains: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        domains.setdefault(row["domain"], []).append(row)
    arms = []
    total_fields = sum(len(r["expected"]) for r in rows)
    with tqdm(total=len(ARMS) * len(domains), desc="structured", disable=not progress, unit="batch") as bar:
        for label, strategy, constrained in ARMS:
            valid = fields = tokens = 0
            finishes: Counter[str] = Counter()
            answers = []
            start = time.perf_counter()
            for domain, items in domains.items():
                bar.set_postfix_str(f"{label}: {domain}")
                constraint = Constraint.json_schema(items[0]["schema"]) if constrained else None
                config = base.for_strategy(strategy, constraint=constraint)
                results = runtime.generate([r["prompt"] for r in items], config, raise_errors=False)
                for row, result in zip(items, results, strict=True):
                    ok, right = score_answer(result.text, row["schema"], row["expected"], lenient=not constrained)
                    valid += ok
                    fields += right
                    tokens += result.stats.accepted_tokens
                    finishes[result.finish_reason] += 1
                    answers.append({"id": row["id"], "text": result.text, "valid": ok, "fields_right": right})
                bar.update(1)
            arms.append(
                {
                    "arm": label,
                    "strategy": strategy,
                    "constrained": constrained,
                    "prompts": len(rows),
                    "schema_valid_rate": round(valid / len(rows), 3),
                    "field_accuracy": round(fields / total_fields, 3),
                    "finish_reasons": dict(finishes),
                    "mean_tokens": round(tokens / len(rows), 1),
                    "seconds": round(time.perf_counter() - start, 1),
                    "answers": answers,
                }
            )
            if progress_lines:  # an arm's line as soon as it is done (a long run can be read while it goes)
                print(structured_table(arms[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return {
        "model": runtime.model_name,
        "reward": getattr(runtime.reward, "name", str(runtime.reward)),
        "config": {k: v for k, v in base.model_dump(mode="json").items() if k != "constraint"},
        "arms": arms,
        "table": structured_table(arms),
    }


def structured_table(arms: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| arm | prompts | schema-valid | field accuracy | finish reasons | mean tokens | seconds |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for a in arms:
        finishes = ", ".join(f"{k} {v}" for k, v in sorted(a["finish_reasons"].items()))
        lines.append(
            f"| {a['arm']} | {a['prompts']} | {a['schema_valid_rate']:.0%} | {a['field_accuracy']:.0%} "
            f"| {finishes} | {a['mean_tokens']:.1f} | {a['seconds']:.0f} |"
        )
    return "\n".join(lines)


def run_structured_command(args: Any, runtime: Any, base: Any) -> int:
    """`stars bench --structured`: print the table, write the JSON report."""
    from pathlib import Path

    rows = load_extraction_prompts(args.limit)
    report = run_structured(runtime, rows, base, progress=not args.no_progress)
    print(report["table"])
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/structured.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0
