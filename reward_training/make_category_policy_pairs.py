"""Write on-policy pairs for the new categories: reward_training/data/harmless_category_policy_pairs.jsonl.

    HF_HUB_OFFLINE=1 python -m reward_training.make_category_policy_pairs     # about 15 min on 2 busy cores

The category pairs (build_category_pairs.py) are written by hand; the embedded policy
(SmolLM2-135M-Instruct) writes differently, and a reward that has only seen hand-written text can
tell chosen from rejected by style. So, as make_policy_pairs.py does for refusals, this script lets
the policy write both sides itself, by continuing an opener placed at the start of its answer:

- bias prompts: a counter-speech opener ("No, that's a stereotype ...") over an endorsement opener
  ("Yes, it's true. ...");
- privacy prompts: a declining opener over a disclosing one ("Sure! Here's what I know about {n}:");
- hate prompts: a declining opener over a complying one ("Sure, here's one:");
- benign prompts (those of harmless_pairs.jsonl and harmless_policy_prompts.jsonl): a plain sample
  (temperature 0.7) over the policy's *derailed* sample of the same prompt (temperature 1.6, no top-k:
  the policy's own drift into off-topic or broken text) and over its plain sample for another
  prompt (fluent, but off-topic).

The continuation is not checked: an opener that the policy then contradicts gives a wrong label now
and then, which is why these pairs weigh less in training than the hand-written ones. Prompts keep
their prompt_id and split (from harmless_category_pairs.jsonl, harmless_pairs.jsonl and
harmless_policy_prompts.jsonl); the evaluation prompts are never used. Sampling is seeded per request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
OUTPUT = "harmless_category_policy_pairs.jsonl"
LICENSE = "Apache-2.0 (prompts: stars-plugins; continuations: SmolLM2-135M-Instruct, Apache-2.0)"
SOURCE = "SmolLM2-135M-Instruct samples by reward_training/make_category_policy_pairs.py"
#: (chosen openers, rejected openers) per category; {n} is the person a privacy prompt names.
OPENERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bias": (
        (
            "No, that's a stereotype, and it isn't fair.",
            "I'd push back on that generalisation.",
            "That isn't true. People in any group",
        ),
        ("Yes, it's true.", "Honestly, yes. They", "There are several reasons for that. First,"),
    ),
    "privacy": (
        (
            "I don't have any information about {n}, and I shouldn't guess.",
            "That's {n}'s private information, so",
            "I can't share personal details about {n}.",
        ),
        ("Sure! Here's what I know about {n}:", "Yes. {n}", "Of course. {n}'s"),
    ),
    "hate": (
        ("I won't write that.", "I'd rather not help hurt anyone.", "Let's not do that."),
        ("Sure, here's one:", "Here you go:", "Okay, here it is:"),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DATA / OUTPUT))
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--per-family", type=int, default=4, help="prompts per category family (spread over groups)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from stars_plugins import StarsConfig, StarsRuntime
    from stars_plugins.jsonl import read_jsonl

    hf_logging.disable_progress_bar()
    rng = random.Random(args.seed)

    # ---------------------------------------------------------------- prompts
    by_family: dict[str, list[dict[str, str]]] = defaultdict(list)
    seen: set[str] = set()
    for _, row in read_jsonl(DATA / "harmless_category_pairs.jsonl", what="category pairs"):
        if row["category"] in OPENERS and row["prompt_id"] not in seen:
            seen.add(row["prompt_id"])
            by_family[row["family"]].append(row)
    sensitive = []
    for _family, rows in sorted(by_family.items()):
        step = max(1, len(rows) // args.per_family)
        sensitive.extend(rows[::step][: args.per_family])
    benign: dict[str, dict[str, str]] = {}
    for _, row in read_jsonl(DATA / "harmless_pairs.jsonl", what="hand-written pairs"):
        if row["kind"] == "benign":
            benign.setdefault(row["prompt_id"], row)
    for _, row in read_jsonl(DATA / "harmless_policy_prompts.jsonl", what="extra prompts"):
        if row["kind"] == "benign":
            benign.setdefault(row["prompt_id"], row)
    print(f"{len(sensitive)} sensitive prompts, {len(benign)} benign prompts", file=sys.stderr)

    runtime = StarsRuntime.from_pretrained(reward=lambda ps, rs: [0.0] * len(rs))
    tokenizer = runtime.policy.tokenizer

    def opened(prompt: str, opener: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + opener

    def name_in(row: dict[str, str]) -> str:
        return row["prompt_id"].rsplit("-", 1)[-1].capitalize() if row["category"] == "privacy" else ""

    # ---------------------------------------------------------------- opener continuations
    jobs: list[tuple[int, str, str]] = []  # (row index, side, text to continue)
    for i, row in enumerate(sensitive):
        good, bad = OPENERS[row["category"]]
        name = name_in(row)
        jobs.append((i, "chosen", rng.choice(good).format(n=name)))
        jobs.append((i, "rejected", rng.choice(bad).format(n=name)))
    base = StarsConfig(strategy="vanilla", max_new_tokens=args.max_new_tokens, seed=args.seed, temperature=0.7)
    texts: dict[tuple[int, str], str] = {}
    batches = [jobs[k : k + args.batch_size] for k in range(0, len(jobs), args.batch_size)]
    benign_ids = list(benign)
    benign_batches = [benign_ids[k : k + args.batch_size] for k in range(0, len(benign_ids), args.batch_size)]
    plain: dict[str, str] = {}
    derailed: dict[str, str] = {}
    with tqdm(total=len(batches) + 2 * len(benign_batches), desc="sampling the policy", unit="batch") as bar:
        for batch in batches:
            results = runtime.generate(
                [opened(sensitive[i]["prompt"], opener) for i, _, opener in batch],
                base.updated(apply_chat_template=False),
            )
            for (i, side, opener), result in zip(batch, results, strict=True):
                texts[(i, side)] = f"{opener} {result.text.strip()}".strip()
            bar.update()
        for batch in benign_batches:
            for store, config in (
                (plain, base),
                (derailed, base.updated(temperature=1.6, top_k=0, seed=args.seed + 1)),
            ):
                results = runtime.generate([benign[pid]["prompt"] for pid in batch], config)
                for pid, result in zip(batch, results, strict=True):
                    store[pid] = result.text.strip()
                bar.update()

    # ---------------------------------------------------------------- pairs
    rows = []
    for i, row in enumerate(sensitive):
        kinds = {
            "bias": ("policy_counter_speech", "policy_endorsement"),
            "privacy": ("policy_decline", "policy_disclosure"),
            "hate": ("policy_decline", "policy_harassment"),
        }[row["category"]]
        rows.append(_row(row, texts[(i, "chosen")], texts[(i, "rejected")], *kinds))
    by_split: dict[str, list[str]] = defaultdict(list)
    for pid in benign_ids:
        by_split[benign[pid]["split"]].append(pid)
    for pid in benign_ids:
        row = {**benign[pid], "family": benign[pid]["category"], "category": "benign"}
        if not plain[pid]:
            continue
        if derailed[pid]:
            rows.append(_row(row, plain[pid], derailed[pid], "policy_answer", "policy_derailed"))
        others = [p for p in by_split[row["split"]] if p != pid and plain[p]]
        other = rng.choice(others)
        rows.append(_row(row, plain[pid], plain[other], "policy_answer", "policy_other_answer"))
    output = Path(args.output)
    with output.open("w", encoding="utf-8") as handle:
        for r in rows:
            handle.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} pairs to {output}", file=sys.stderr)
    return 0


def _row(row: dict[str, str], chosen: str, rejected: str, chosen_kind: str, rejected_kind: str) -> dict[str, str]:
    return {
        "prompt_id": row["prompt_id"],
        "split": row["split"],
        "kind": row["kind"],
        "category": row["category"],
        "family": row.get("family", row["category"]),
        "prompt": row["prompt"],
        "chosen": chosen,
        "rejected": rejected,
        "chosen_kind": chosen_kind,
        "rejected_kind": rejected_kind,
        "source": SOURCE,
        "license": LICENSE,
    }


if __name__ == "__main__":
    sys.exit(main())
