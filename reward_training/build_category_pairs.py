"""Write the category pairs and group-swap sets of the "harmless" reward from the project's own text:
reward_training/data/harmless_category_pairs.jsonl, harmless_category_policy_pairs.jsonl and
harmless_group_swaps.jsonl.

    python -m reward_training.build_category_pairs        # a second; deterministic (seeded)

Categories (the `category` field) and what each pair prefers:

- `bias`: stereotype and discrimination questions about a group: counter-speech that names the group
  over endorsement, over evasion, over off-topic text; a refusal over endorsement;
- `privacy`: questions about a named private person: declining to find or invent their details
  over disclosing (invented) ones, over evasion, over off-topic text;
- `hate`: requests to mock, insult or harass a person or a group: declining or de-escalating over
  producing it, over off-topic text;
- `benign_group`: harmless questions that name a group: a helpful answer that names it over a needless
  refusal, an evasive non-answer, off-topic text and a stereotyping answer;
- `benign`: the benign prompts of harmless_pairs.jsonl with their hand-written answers: the answer over
  another prompt's answer, its own words scrambled, word salad, letter gibberish, emoji noise, a
  repetition loop and evasive non-answers;
- `benign`, on-policy (harmless_category_policy_pairs.jsonl): the embedded policy's own answers, as
  sampled by make_policy_pairs.py (harmless_policy_pairs.jsonl), over its answer to another prompt
  and over a derailed answer: its answer's opening followed by the rest of its answer to another
  prompt (the drift STARS must not reward: fluent, in the policy's style, and off-topic).

Splits are by prompt family (text_bank.py marks each family, response template, group and name):
a held-out prompt comes from a held-out family and is answered only with held-out response
templates, and held-out groups and names appear only there. The benign pairs keep their prompt's
split from harmless_pairs.jsonl. Every line states its `source` and `license`.

The group-swap file holds, per (family, prompt wording, response template, stereotype), the same
prompt and response written for every group of its split; training pulls their scores together and
the held-out sets measure how far they still drift apart.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reward_training import text_bank as tb

DATA = Path(__file__).resolve().parent / "data"
CATEGORY_FILE = "harmless_category_pairs.jsonl"
CATEGORY_POLICY_FILE = "harmless_category_policy_pairs.jsonl"
SWAP_FILE = "harmless_group_swaps.jsonl"
LICENSE = "Apache-2.0"
SOURCE_TEMPLATES = "stars-plugins reward_training/text_bank.py (hand-written templates)"
SOURCE_DERIVED = "stars-plugins harmless_pairs.jsonl answers (hand-written), transformed by build_category_pairs.py"
SOURCE_POLICY = (
    "SmolLM2-135M-Instruct samples from harmless_policy_pairs.jsonl (make_policy_pairs.py), recombined by "
    "build_category_pairs.py"
)
LICENSE_POLICY = "Apache-2.0 (prompts: stars-plugins; samples: SmolLM2-135M-Instruct, Apache-2.0)"
GENERIC_REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I can't help with that request.",
    "I won't help with this.",
)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, *, group: tb.Group | None = None, trait: str = "", name: str = "", target: str = "") -> str:
    values = {"t": trait, "n": name, "target": target}
    if group is not None:
        values.update(g=group.plural, G=cap(group.plural), a=group.adj)
    text = template.format(**values)
    return cap(text)


def split_of(template_split: str, *, train: Sequence[str], heldout: Sequence[str]) -> Sequence[str]:
    return train if template_split == "train" else heldout


def groups_for(split: str) -> list[tb.Group]:
    """Train families use the train groups; held-out families use every group (seen and unseen)."""
    return [g for g in tb.GROUPS if split == "heldout" or g.split == "train"]


def names_for(split: str) -> tuple[str, ...]:
    return tb.NAMES_TRAIN if split == "train" else tb.NAMES_TRAIN + tb.NAMES_HELDOUT


def traits_for(split: str) -> tuple[str, ...]:
    return tb.TRAITS_TRAIN if split == "train" else tb.TRAITS_TRAIN + tb.TRAITS_HELDOUT


def uses_trait(template: str) -> bool:
    return "{t}" in template


class Builder:
    def __init__(self, benign: list[dict[str, Any]], seed: int):
        self.rng = random.Random(seed)
        self.rows: list[dict[str, Any]] = []
        self.swaps: list[dict[str, Any]] = []
        self.benign = benign
        self.answers_by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)  # (prompt_id, answer)
        for b in benign:
            for answer in b["answers"]:
                self.answers_by_split[b["split"]].append((b["prompt_id"], answer))

    # ------------------------------------------------------------------------ helpers
    def off_topic(self, split: str, not_prompt: str = "") -> str:
        pool = [a for pid, a in self.answers_by_split[split] if pid != not_prompt]
        return self.rng.choice(pool)

    def pair(
        self,
        *,
        prompt_id: str,
        split: str,
        kind: str,
        category: str,
        family: str,
        prompt: str,
        chosen: str,
        rejected: str,
        chosen_kind: str,
        rejected_kind: str,
        group: str = "",
        source: str = SOURCE_TEMPLATES,
    ) -> None:
        self.rows.append(
            {
                "prompt_id": prompt_id,
                "split": split,
                "kind": kind,
                "category": category,
                "family": family,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_kind": chosen_kind,
                "rejected_kind": rejected_kind,
                **({"group": group} if group else {}),
                "source": source,
                "license": LICENSE,
            }
        )

    def pick(self, templates: Sequence[str], *, trait: bool, k: int = 1) -> list[str]:
        usable = [t for t in templates if trait or not uses_trait(t)]
        return self.rng.sample(usable, min(k, len(usable)))

    # ------------------------------------------------------------------------ bias
    def bias(self) -> None:
        for family in tb.BIAS_FAMILIES:
            split = family.split
            counters = split_of(split, train=tb.COUNTER_TRAIN, heldout=tb.COUNTER_HELDOUT)
            endorse = split_of(split, train=tb.ENDORSE_TRAIN, heldout=tb.ENDORSE_HELDOUT)
            evasive = split_of(split, train=tb.EVASIVE_SENSITIVE_TRAIN, heldout=tb.EVASIVE_SENSITIVE_HELDOUT)
            has_trait = "t" in family.needs
            for i, group in enumerate(groups_for(split)):
                wording = family.templates[i % len(family.templates)]
                trait = self.rng.choice(traits_for(split)) if has_trait else ""
                prompt = fill(wording, group=group, trait=trait)
                pid = f"cat-{family.id}-{group.adj.lower()}"
                common = dict(
                    prompt_id=pid, split=split, kind="harmful", category="bias", family=family.id, prompt=prompt
                )
                chosen = [fill(t, group=group, trait=trait) for t in self.pick(counters, trait=has_trait, k=3)]
                bad = [fill(t, group=group, trait=trait) for t in self.pick(endorse, trait=has_trait, k=2)]
                for c, e in zip(chosen, bad, strict=False):
                    self.pair(
                        **common,
                        chosen=c,
                        rejected=e,
                        chosen_kind="counter_speech",
                        rejected_kind="endorsement",
                        group=group.plural,
                    )
                self.pair(
                    **common,
                    chosen=chosen[-1],
                    rejected=fill(self.rng.choice(evasive), group=group),
                    chosen_kind="counter_speech",
                    rejected_kind="evasion",
                    group=group.plural,
                )
                self.pair(
                    **common,
                    chosen=chosen[0],
                    rejected=self.off_topic(split),
                    chosen_kind="counter_speech",
                    rejected_kind="off_topic",
                    group=group.plural,
                )
                self.pair(
                    **common,
                    chosen=self.rng.choice(GENERIC_REFUSALS),
                    rejected=bad[0],
                    chosen_kind="refusal",
                    rejected_kind="endorsement",
                    group=group.plural,
                )
        for j, (split, prompt) in enumerate(tb.ABSTRACT_BIAS_PROMPTS):
            counters = split_of(split, train=tb.ABSTRACT_COUNTER_TRAIN, heldout=tb.ABSTRACT_COUNTER_HELDOUT)
            endorse = split_of(split, train=tb.ABSTRACT_ENDORSE_TRAIN, heldout=tb.ABSTRACT_ENDORSE_HELDOUT)
            evasive = [
                t
                for t in split_of(split, train=tb.EVASIVE_SENSITIVE_TRAIN, heldout=tb.EVASIVE_SENSITIVE_HELDOUT)
                if "{g}" not in t
            ]
            common = dict(
                prompt_id=f"cat-bias-abstract-{j:02d}",
                split=split,
                kind="harmful",
                category="bias",
                family="bias-abstract-" + split,
                prompt=prompt,
            )
            for c in counters:
                for e in endorse:
                    self.pair(**common, chosen=c, rejected=e, chosen_kind="counter_speech", rejected_kind="endorsement")
            self.pair(
                **common,
                chosen=counters[0],
                rejected=self.rng.choice(evasive),
                chosen_kind="counter_speech",
                rejected_kind="evasion",
            )
            self.pair(
                **common,
                chosen=counters[-1],
                rejected=self.off_topic(split),
                chosen_kind="counter_speech",
                rejected_kind="off_topic",
            )

    # ------------------------------------------------------------------------ privacy
    def privacy(self) -> None:
        for family in tb.PRIVACY_FAMILIES:
            split = family.split
            declines = split_of(split, train=tb.PRIVACY_DECLINE_TRAIN, heldout=tb.PRIVACY_DECLINE_HELDOUT)
            evasive = [
                t
                for t in split_of(split, train=tb.EVASIVE_SENSITIVE_TRAIN, heldout=tb.EVASIVE_SENSITIVE_HELDOUT)
                if "{g}" not in t
            ]
            for i, name in enumerate(names_for(split)):
                prompt = fill(family.templates[i % len(family.templates)], name=name)
                common = dict(
                    prompt_id=f"cat-{family.id}-{name.lower()}",
                    split=split,
                    kind="harmful",
                    category="privacy",
                    family=family.id,
                    prompt=prompt,
                )
                chosen = [fill(t, name=name) for t in self.rng.sample(declines, min(2, len(declines)))]
                for c, d in zip(chosen, tb.PRIVACY_DISCLOSURES[family.id], strict=False):
                    self.pair(
                        **common,
                        chosen=c,
                        rejected=fill(d, name=name),
                        chosen_kind="decline",
                        rejected_kind="disclosure",
                    )
                self.pair(
                    **common,
                    chosen=chosen[0],
                    rejected=self.rng.choice(evasive),
                    chosen_kind="decline",
                    rejected_kind="evasion",
                )
                self.pair(
                    **common,
                    chosen=chosen[-1],
                    rejected=self.off_topic(split),
                    chosen_kind="decline",
                    rejected_kind="off_topic",
                )

    # ------------------------------------------------------------------------ hate and harassment
    def hate(self) -> None:
        for family in tb.HATE_FAMILIES:
            split = family.split
            declines = split_of(split, train=tb.HATE_DECLINE_TRAIN, heldout=tb.HATE_DECLINE_HELDOUT)
            targets: list[tuple[str, tb.Group | None, str]] = (
                [(g.adj.lower(), g, "") for g in groups_for(split)]
                if family.needs == "g"
                else [(n.lower(), None, n) for n in names_for(split)]
            )
            for i, (key, group, name) in enumerate(targets):
                prompt = fill(family.templates[i % len(family.templates)], group=group, name=name)
                target = group.plural if group is not None else name
                common = dict(
                    prompt_id=f"cat-{family.id}-{key}",
                    split=split,
                    kind="harmful",
                    category="hate",
                    family=family.id,
                    prompt=prompt,
                )
                chosen = [fill(t, target=target) for t in self.rng.sample(declines, min(2, len(declines)))]
                for c, bad in zip(chosen, tb.HATE_COMPLIANCE[family.id], strict=False):
                    self.pair(
                        **common,
                        chosen=c,
                        rejected=fill(bad, group=group, name=name),
                        chosen_kind="decline",
                        rejected_kind="harassment",
                        group=group.plural if group else "",
                    )
                self.pair(
                    **common,
                    chosen=chosen[0],
                    rejected=self.off_topic(split),
                    chosen_kind="decline",
                    rejected_kind="off_topic",
                    group=group.plural if group else "",
                )

    # ------------------------------------------------------------------------ benign prompts naming a group
    def benign_group(self) -> None:
        for family in tb.BENIGN_GROUP_FAMILIES:
            split = family.split
            refusals = split_of(split, train=tb.GROUP_REFUSAL_TRAIN, heldout=tb.GROUP_REFUSAL_HELDOUT)
            evasive = split_of(split, train=tb.EVASIVE_BENIGN_TRAIN, heldout=tb.EVASIVE_BENIGN_HELDOUT)
            endorse = split_of(split, train=tb.ENDORSE_TRAIN, heldout=tb.ENDORSE_HELDOUT)
            for group in groups_for(split):
                trait = self.rng.choice(traits_for(split))
                prompt = fill(family.templates[0], group=group)
                common = dict(
                    prompt_id=f"cat-{family.id}-{group.adj.lower()}",
                    split=split,
                    kind="benign",
                    category="benign_group",
                    family=family.id,
                    prompt=prompt,
                    group=group.plural,
                )
                answers = [fill(a, group=group) for a in tb.BENIGN_GROUP_ANSWERS[family.id]]
                rejected = [
                    (fill(self.rng.choice(refusals), group=group), "refusal"),
                    (fill(self.rng.choice(evasive), group=group), "evasion"),
                    (self.off_topic(split), "off_topic"),
                    (fill(self.rng.choice(endorse), group=group, trait=trait), "endorsement"),
                ]
                for j, (text, kind) in enumerate(rejected):
                    self.pair(
                        **common,
                        chosen=answers[j % len(answers)],
                        rejected=text,
                        chosen_kind="helpful",
                        rejected_kind=kind,
                    )

    # ------------------------------------------------------------------------ benign prompts: noise and evasion
    def benign_noise(self) -> None:
        for b in self.benign:
            split, pid = b["split"], b["prompt_id"]
            evasive = split_of(split, train=tb.EVASIVE_BENIGN_TRAIN, heldout=tb.EVASIVE_BENIGN_HELDOUT)
            common = dict(
                prompt_id=pid,
                split=split,
                kind="benign",
                category="benign",
                family=b["category"],
                prompt=b["prompt"],
                source=SOURCE_DERIVED,
            )
            for k, answer in enumerate(b["answers"][:2]):
                negatives = [
                    (self.off_topic(split, not_prompt=pid), "other_answer"),
                    (scramble(answer, self.rng), "scrambled"),
                    (word_salad(len(answer.split()), self.rng), "word_salad"),
                    (gibberish(len(answer.split()), self.rng), "gibberish"),
                    (emoji_noise(self.rng), "emoji_noise"),
                    (repetition(answer, self.rng), "repetition"),
                    (self.rng.choice(evasive), "evasion"),
                ]
                if k:  # the second answer meets fewer negatives: the first covers every kind
                    negatives = [negatives[0], negatives[1], negatives[6]]
                for text, kind in negatives:
                    self.pair(**common, chosen=answer, rejected=text, chosen_kind="helpful", rejected_kind=kind)

    # ------------------------------------------------------------------------ the policy's own benign answers
    def policy_noise(self, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each policy answer over the policy's answer to another prompt and over a derailed answer."""
        rows: list[dict[str, Any]] = []
        by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in answers:
            by_split[a["split"]].append(a)
        for a in answers:
            others = [o for o in by_split[a["split"]] if o["prompt_id"] != a["prompt_id"]]
            for k, text in enumerate(a["answers"][:2]):
                other = self.rng.choice(others)
                other_text = self.rng.choice(other["answers"])
                common = {
                    "prompt_id": a["prompt_id"],
                    "split": a["split"],
                    "kind": "benign",
                    "category": "benign",
                    "family": a["category"],
                    "prompt": a["prompt"],
                    "chosen": text,
                    "chosen_kind": "policy_answer",
                    "source": SOURCE_POLICY,
                    "license": LICENSE_POLICY,
                }
                if k == 0:
                    rows.append({**common, "rejected": other_text, "rejected_kind": "policy_other_answer"})
                derailed = derail(text, other_text, self.rng)
                if derailed:
                    rows.append({**common, "rejected": derailed, "rejected_kind": "policy_derailed"})
        return rows

    # ------------------------------------------------------------------------ group swaps
    def group_swaps(self) -> None:
        """One set per (family, wording, response template, trait): the same texts for every group of the split."""
        sets: list[tuple[str, str, str, str, str, str]] = []  # split, category, family, prompt, response, kind
        for family in tb.BIAS_FAMILIES:
            counters = split_of(family.split, train=tb.COUNTER_TRAIN, heldout=tb.COUNTER_HELDOUT)
            endorse = split_of(family.split, train=tb.ENDORSE_TRAIN, heldout=tb.ENDORSE_HELDOUT)
            has_trait = "t" in family.needs
            for wording in family.templates:
                for response, kind in [(c, "counter_speech") for c in self.pick(counters, trait=has_trait, k=2)] + [
                    (e, "endorsement") for e in self.pick(endorse, trait=has_trait, k=1)
                ]:
                    sets.append((family.split, "bias", family.id, wording, response, kind))
        for family in tb.HATE_FAMILIES:
            if family.needs != "g":
                continue
            declines = split_of(family.split, train=tb.HATE_DECLINE_TRAIN, heldout=tb.HATE_DECLINE_HELDOUT)
            for wording in family.templates:
                sets.append((family.split, "hate", family.id, wording, self.rng.choice(declines), "decline"))
                sets.append((family.split, "hate", family.id, wording, tb.HATE_COMPLIANCE[family.id][0], "harassment"))
        for family in tb.BENIGN_GROUP_FAMILIES:
            for answer in tb.BENIGN_GROUP_ANSWERS[family.id][:1]:
                sets.append((family.split, "benign_group", family.id, family.templates[0], answer, "helpful"))
        for n, (split, category, family_id, wording, response, kind) in enumerate(sets):
            trait = self.rng.choice(traits_for(split))
            items = []
            for group in groups_for(split):
                items.append(
                    {
                        "group": group.plural,
                        "adj": group.adj,
                        "prompt": fill(wording, group=group, trait=trait),
                        "response": fill(response, group=group, trait=trait, target=group.plural),
                    }
                )
            self.swaps.append(
                {
                    "swap_id": f"swap-{n:03d}",
                    "split": split,
                    "category": category,
                    "family": family_id,
                    "response_kind": kind,
                    "items": items,
                    "source": SOURCE_TEMPLATES,
                    "license": LICENSE,
                }
            )


# ---------------------------------------------------------------------------- noise makers
def derail(text: str, other: str, rng: random.Random) -> str | None:
    """The first 25-40 % of `text`'s words, then `other` from its middle on: an answer that drifts off."""
    words, tail = text.split(), other.split()
    if len(words) < 12 or len(tail) < 12:
        return None
    head = words[: max(4, int(len(words) * rng.uniform(0.25, 0.4)))]
    return " ".join(head + tail[len(tail) // 2 :])


def scramble(text: str, rng: random.Random) -> str:
    words = text.split()
    shuffled = words[:]
    for _ in range(5):
        rng.shuffle(shuffled)
        if shuffled != words:
            break
    return " ".join(shuffled)


def word_salad(n: int, rng: random.Random) -> str:
    words = [rng.choice(tb.SALAD_WORDS) for _ in range(max(6, n))]
    return cap(" ".join(words)) + "."


def gibberish(n: int, rng: random.Random) -> str:
    consonants, vowels = "bcdfghjklmnprstvwxz", "aeiou"

    def word() -> str:
        return "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(1, 4)))

    return " ".join(word() for _ in range(max(6, min(n, 60))))


def emoji_noise(rng: random.Random) -> str:
    parts = [rng.choice(tb.EMOJI) * rng.randint(1, 3) for _ in range(rng.randint(6, 20))]
    fillers = ["lol", "omg", "!!!", "yay", "haha", "wow"]
    for _ in range(rng.randint(1, 4)):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(fillers))
    return " ".join(parts)


def repetition(text: str, rng: random.Random) -> str:
    words = text.split()
    start = rng.randrange(max(1, len(words) - 4))
    chunk = " ".join(words[start : start + rng.randint(2, 4)])
    return " ".join([chunk] * rng.randint(8, 16))


# ---------------------------------------------------------------------------- main
def benign_prompts(path: Path) -> list[dict[str, Any]]:
    """The benign prompts of harmless_pairs.jsonl and their hand-written helpful answers, in file order."""
    prompts: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["kind"] != "benign":
            continue
        entry = prompts.setdefault(
            row["prompt_id"],
            {
                "prompt_id": row["prompt_id"],
                "split": row["split"],
                "category": row["category"],
                "prompt": row["prompt"],
                "answers": [],
            },
        )
        if row["chosen"] not in entry["answers"]:
            entry["answers"].append(row["chosen"])
    return list(prompts.values())


def policy_answers(path: Path) -> list[dict[str, Any]]:
    """The policy's own answers to benign prompts in harmless_policy_pairs.jsonl (`chosen_kind` policy_answer)."""
    prompts: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["kind"] != "benign" or row.get("chosen_kind") != "policy_answer":
            continue
        entry = prompts.setdefault(
            row["prompt_id"],
            {
                "prompt_id": row["prompt_id"],
                "split": row["split"],
                "category": row["category"],
                "prompt": row["prompt"],
                "answers": [],
            },
        )
        if row["chosen"] not in entry["answers"]:
            entry["answers"].append(row["chosen"])
    return list(prompts.values())


def build(
    seed: int = 0, data: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(category pairs, on-policy category pairs, group-swap sets)."""
    folder = data or DATA
    builder = Builder(benign_prompts(folder / "harmless_pairs.jsonl"), seed)
    builder.bias()
    builder.privacy()
    builder.hate()
    builder.benign_group()
    builder.benign_noise()
    builder.group_swaps()
    policy_rows = builder.policy_noise(policy_answers(folder / "harmless_policy_pairs.jsonl"))
    return builder.rows, policy_rows, builder.swaps


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(DATA))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows, policy_rows, swaps = build(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = write_jsonl(out / CATEGORY_FILE, rows)
    n_policy = write_jsonl(out / CATEGORY_POLICY_FILE, policy_rows)
    m = write_jsonl(out / SWAP_FILE, swaps)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows + policy_rows:
        counts[(row["split"], row["category"], row["rejected_kind"])] += 1
    for key in sorted(counts):
        print(f"{key[0]:>8} {key[1]:>13} {key[2]:>14}: {counts[key]}", file=sys.stderr)
    print(
        f"wrote {n} pairs to {out / CATEGORY_FILE}, {n_policy} to {out / CATEGORY_POLICY_FILE} and {m} group-swap "
        f"sets to {out / SWAP_FILE}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
