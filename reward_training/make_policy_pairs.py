"""Write on-policy preference pairs for the "harmless" reward: reward_training/data/harmless_policy_pairs.jsonl.

The hand-written pairs (harmless_pairs.jsonl) teach the reward what refusals and helpful answers
look like, but their "compliance" texts look nothing like what the embedded policy (SmolLM2-135M)
writes, so a head trained on them alone scores the policy's own rambling compliance highly. This
script samples the policy (plain sampling, fixed seeds) on the prompts of harmless_pairs.jsonl and
pairs its samples with refusals of the same prompt:

- harmful prompt: a refusal over a policy sample that contains no refusal phrase (rejected_kind
  "policy_compliance"). Each such sample is paired twice: with a hand-written refusal of that
  prompt (chosen_kind "refusal") and with a policy-written refusal (chosen_kind "policy_refusal");
- benign prompt: a policy sample that is not a refusal over a refusal (rejected_kind "refusal"),
  again once hand-written and once policy-written (rejected_kind "policy_refusal").

Borderline prompts (medication doses, home chemistry...) are left out: whether a policy sample there
is useful safety information or dangerous detail cannot be told by a phrase list, and pairs that
guessed it (tried during development) lowered held-out accuracy.

Besides the prompts of harmless_pairs.jsonl, it samples the extra prompts of
harmless_policy_prompts.jsonl (prompts only, written for this project, disjoint from the eval set);
having no hand-written responses, those get the policy-written pairs only. They exist because the
head's hardest judgement is whether a prompt is harmful at all, and more prompts teach it better.

The policy almost never refuses on its own (under 1 % of 64-token samples), so its refusals are
written by letting it continue a refusal opener ("I'm sorry, but", "I can't help with", ...) placed
at the start of its answer. That gives refusals in the policy's own style, so the head cannot
tell chosen from rejected by style (hand-written vs generated) alone: on harmful prompts the
policy's refusals must beat its compliance, on benign prompts its answers must beat its refusals.

Each pair keeps the prompt's prompt_id and split;
`python -m reward_training` trains on the train split only and reports accuracy on the held-out split.
The evaluation prompts (harmless_eval.jsonl) are never used. Refusals are detected with
`stars_plugins.benchmarks.evaluation.is_refusal`, the same documented phrase list `stars eval` uses.

    HF_HUB_OFFLINE=1 python reward_training/make_policy_pairs.py            # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (
    "SmolLM2-135M-Instruct samples by reward_training/make_policy_pairs.py, paired with refusals written by hand "
    "or by the policy"
)
LICENSE = "Apache-2.0 (prompts, hand-written refusals: stars-plugins; samples: SmolLM2-135M-Instruct, Apache-2.0)"
DATA = ROOT / "reward_training" / "data"
#: Starts of a refusal; the policy writes the rest. Sample j of a prompt uses opener j (cyclically).
REFUSAL_OPENERS = (
    "I'm sorry, but I can't help with that.",
    "I can't help with that request.",
    "I won't help with this.",
    "Sorry, I'm not able to assist with that.",
    "I cannot provide that information.",
    "I'm not going to help with this.",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA / "harmless_pairs.jsonl"), help="hand-written pairs")
    parser.add_argument(
        "--extra-prompts",
        default=str(DATA / "harmless_policy_prompts.jsonl"),
        help="JSONL of extra prompts (prompt_id, split, kind, category, prompt); '' for none",
    )
    parser.add_argument("--output", default=str(DATA / "harmless_policy_pairs.jsonl"))
    parser.add_argument("--samples", type=int, default=4, help="policy samples per prompt (one seed each)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="sample j of every prompt uses seed + j")
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per lockstep batch")
    parser.add_argument("--splits", default="train,heldout", help="which splits' prompts to sample")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from reward_training.train import load_pairs
    from stars_plugins import StarsConfig, StarsRuntime
    from stars_plugins.benchmarks.evaluation import is_refusal
    from stars_plugins.jsonl import read_jsonl

    hf_logging.disable_progress_bar()
    splits = set(args.splits.split(","))
    pairs = load_pairs(args.data)
    prompts: dict[str, dict[str, str]] = {}
    refusals: dict[str, list[str]] = defaultdict(list)  # hand-written refusals of each prompt, in file order
    for pair in pairs:
        if pair.split not in splits or pair.kind not in ("harmful", "benign"):
            continue
        prompts.setdefault(
            pair.prompt_id,
            {
                "prompt_id": pair.prompt_id,
                "split": pair.split,
                "kind": pair.kind,
                "category": pair.category,
                "prompt": pair.prompt,
            },
        )
        text = pair.chosen if pair.kind == "harmful" else pair.rejected
        if (pair.kind == "harmful" or pair.rejected_kind == "refusal") and text not in refusals[pair.prompt_id]:
            refusals[pair.prompt_id].append(text)
    if args.extra_prompts:
        for where, row in read_jsonl(args.extra_prompts, what="extra prompt file"):
            missing = {"prompt_id", "split", "kind", "category", "prompt"} - set(row)
            if missing or row["kind"] not in ("harmful", "benign") or row["prompt_id"] in prompts:
                raise ValueError(f"{where}: needs prompt_id (new), split, kind (harmful/benign), category and prompt")
            if row["split"] in splits:
                prompts[row["prompt_id"]] = {k: row[k] for k in ("prompt_id", "split", "kind", "category", "prompt")}
    ids = list(prompts)
    print(f"{len(ids)} prompts ({', '.join(sorted(splits))}), {args.samples} samples each", file=sys.stderr)

    # The reward plays no part in plain sampling: a constant keeps this script independent of the head.
    runtime = StarsRuntime.from_pretrained(reward=lambda ps, rs: [0.0] * len(rs))
    tokenizer = runtime.policy.tokenizer

    def opened(prompt: str, opener: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + opener

    plain: dict[str, list[str]] = defaultdict(list)
    written_by_policy: dict[str, list[str]] = defaultdict(list)
    batches = [ids[i : i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
    with tqdm(total=len(batches) * args.samples * 2, desc="sampling the policy", unit="batch") as bar:
        for j in range(args.samples):
            config = StarsConfig(strategy="vanilla", max_new_tokens=args.max_new_tokens, seed=args.seed + j)
            opener = REFUSAL_OPENERS[j % len(REFUSAL_OPENERS)]
            for batch in batches:
                results = runtime.generate([prompts[pid]["prompt"] for pid in batch], config)
                for pid, result in zip(batch, results, strict=True):
                    plain[pid].append(result.text.strip())
                bar.update()
                # The same prompts in raw chat form, the assistant's turn begun with a refusal opener.
                results = runtime.generate(
                    [opened(prompts[pid]["prompt"], opener) for pid in batch], config.updated(apply_chat_template=False)
                )
                for pid, result in zip(batch, results, strict=True):
                    written_by_policy[pid].append(f"{opener} {result.text.strip()}".strip())
                bar.update()

    rows = []
    counts: dict[str, int] = defaultdict(int)
    for pid in ids:
        info = prompts[pid]
        texts = [t for t in plain[pid] if t]
        others = [t for t in texts if not is_refusal(t)]
        counts[f"{info['kind']} samples"] += len(texts)
        counts[f"{info['kind']} refusals"] += len(texts) - len(others)
        by_hand, by_policy = refusals[pid], written_by_policy[pid]
        for i, text in enumerate(others):
            choices = [(by_policy[i % len(by_policy)], "policy_refusal")]
            if by_hand:
                choices.insert(0, (by_hand[i % len(by_hand)], "refusal"))
            for refusal, kind in choices:
                if info["kind"] == "harmful":
                    rows.append(
                        {
                            **info,
                            "chosen": refusal,
                            "rejected": text,
                            "rejected_kind": "policy_compliance",
                            "chosen_kind": kind,
                            "source": SOURCE,
                            "license": LICENSE,
                        }
                    )
                else:
                    rows.append(
                        {
                            **info,
                            "chosen": text,
                            "rejected": refusal,
                            "rejected_kind": kind,
                            "chosen_kind": "policy_answer",
                            "source": SOURCE,
                            "license": LICENSE,
                        }
                    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{summary}\nwrote {len(rows)} pairs to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
