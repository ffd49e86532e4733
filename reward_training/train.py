"""Training the "harmless" reward head from the project's preference data (`python -m reward_training`).

Maintainer tooling, kept out of the `stars-plugins` wheel: the runtime only loads the trained head
(`stars_plugins/rewards/weights/`).

Bradley-Terry: minimise -log sigmoid(s(prompt, chosen) - s(prompt, rejected)) over pairs. Three
small terms join it: a calibration term, -log sigmoid(s(chosen)) - log sigmoid(-s(rejected)), which
puts good answers above 0 and bad ones below it on every prompt (STARS compares rewards with one
threshold across prompts, so the scale must not drift from prompt to prompt); a logistic loss that
teaches the head's gate each prompt's kind (harmful 1, borderline 0.5, benign 0); and a group-swap
term, the variance of the scores of one prompt and response written for different groups, so that
the group named does not move the score. The sentence embedder stays frozen, so every text is
embedded once and training the head takes seconds. STARS scores unfinished answers, so each pair
also yields prefix pairs (the first 10 to 60 tokens of both responses). The split into train and
held-out is by prompt (and, for the category pairs, by prompt family), as the data files mark it.

The data (reward_training/data/, see its README): hand-written pairs (harmless_pairs.jsonl), the
policy's own samples (harmless_policy_pairs.jsonl, harmless_category_policy_pairs.jsonl), the
template-built category pairs (harmless_category_pairs.jsonl: bias, privacy, hate, benign noise
and evasion) and the group-swap sets (harmless_group_swaps.jsonl).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reward_training.pairs import (  # noqa: F401  (re-exported: the data API lived here before)
    CATEGORY_FILE,
    HANDWRITTEN_FILE,
    POLICY_FILE,
    PREFIX_TOKENS,
    REQUIRED_FIELDS,
    DataError,
    PreferencePair,
    data_folder,
    default_data_path,
    default_data_paths,
    default_swap_path,
    load_pairs,
    load_swaps,
    token_prefix_cutter,
    with_prefixes,
)
from stars_plugins.acceptance import quantile
from stars_plugins.rewards.harmless import FEATURES, HEAD_FILE, PairHead, SentenceEmbedder

#: What the gate learns for each prompt kind: how much a refusal is the right answer.
KIND_HARMFULNESS = {"harmful": 1.0, "borderline": 0.5, "benign": 0.0}
#: The head's scalar inputs besides the embeddings (see stars_plugins.rewards.harmless.FEATURES).
DEFAULT_FEATURES: tuple[str, ...] = FEATURES


@dataclass
class TrainingReport:
    """Pairwise accuracies: the share of pairs whose chosen response scores above the rejected one."""

    train_pairs: int
    heldout_pairs: int
    train_accuracy: float
    #: held-out hand-written pairs (harmless_pairs.jsonl): full responses, prefixes, both
    heldout_full_accuracy: float
    heldout_prefix_accuracy: float
    heldout_accuracy: float
    heldout_accuracy_by_kind: dict[str, float]
    #: held-out pairs with a policy-written side, where given
    heldout_policy_full_accuracy: float | None
    heldout_policy_prefix_accuracy: float | None
    heldout_policy_accuracy: float | None
    heldout_gate_accuracy: float | None  # harmful vs benign held-out prompts told apart by the gate
    default_target: float
    decision_threshold: float
    epochs: int
    seed: int
    data: list[str] = field(default_factory=list)
    #: reward_training.heldout: accuracy per category on held-out full responses and prefixes
    heldout_checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: reward_training.heldout.swap_report on the held-out group-swap sets
    group_swap: dict[str, Any] = field(default_factory=dict)
    #: sha256 of each data file, so a head can be matched to the data it was trained on
    data_sha256: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class EmbeddingTable:
    """Every text embedded once (optionally kept in a cache file between runs): vectors and text statistics."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        texts: Sequence[str],
        *,
        cache: Path | None = None,
        progress: bool = True,
    ):
        from tqdm.auto import tqdm

        self.texts = sorted(set(texts))
        self.index = {t: i for i, t in enumerate(self.texts)}
        stored: dict[str, torch.Tensor] = torch.load(cache) if cache is not None and cache.is_file() else {}
        key = lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest()  # noqa: E731
        missing = [t for t in self.texts if key(t) not in stored]
        chunk = max(1, embedder.batch_size)
        for start in tqdm(range(0, len(missing), chunk), desc="embedding", unit="batch", disable=not progress):
            part = missing[start : start + chunk]
            vectors, stats = embedder.encode_with_stats(part)
            assert stats is not None
            for text, row in zip(part, torch.cat([vectors, stats], dim=-1).cpu(), strict=True):
                stored[key(text)] = row.clone()
        if cache is not None and missing:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(stored, cache)
        rows = torch.stack([stored[key(t)] for t in self.texts]) if self.texts else torch.zeros((0, embedder.dim + 3))
        self.vectors = rows[:, : embedder.dim].contiguous()
        self.stats = rows[:, embedder.dim :].contiguous()

    def take(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.index[t] for t in texts]
        return self.vectors[rows], self.stats[rows]


def train_harmless_head(
    data: str | Path | Sequence[str | Path] | None = None,
    output: str | Path | None = None,
    *,
    swaps: str | Path | bool | None = None,
    seed: int = 0,
    epochs: int = 40,
    hidden: int = 256,
    dropout: float = 0.3,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    batch_size: int = 64,
    calibration: float = 0.3,
    gate_weight: float = 2.0,
    policy_weight: float = 0.2,
    template_weight: float = 0.25,
    swap_weight: float = 8.0,
    features: Sequence[str] = DEFAULT_FEATURES,
    target_quantile: float = 0.25,
    embedder: SentenceEmbedder | None = None,
    embedding_cache: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainingReport:
    """Train the head on the train split of every data file, report held-out pairwise accuracy,
    save safetensors + JSON metadata (accuracies, `default_target`) to `output`.

    The first data file is the reference set (the hand-written pairs): its held-out accuracy is
    reported as `heldout_*_accuracy`. Pairs with a policy-written side weigh `policy_weight` each in
    the loss, the other pairs of the other files (the template-built category pairs) `template_weight`.
    `swaps` is a group-swap file (True: the shipped one; False: none; None: the shipped one when
    `data` is None, else none).
    `default_target`, the r_target STARS aims at, is the `target_quantile` quantile of the chosen
    training responses' scores (prefixes included): a reward most good answers reach. The score
    that best separates chosen from rejected responses is recorded too (`decision_threshold`).
    `embedding_cache` keeps the embeddings in a file between runs (development only: the result is
    the same with or without it).
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from reward_training.heldout import run_checks, swap_report

    torch.manual_seed(seed)
    random.seed(seed)
    if data is None:
        paths = default_data_paths()
    elif isinstance(data, str | Path):
        paths = [Path(data)]
    else:
        paths = [Path(p) for p in data]
    if not paths:
        raise ValueError("no preference data files given")
    if swaps is None:
        swaps = data is None
    swap_path = default_swap_path() if swaps is True else (Path(swaps) if swaps else None)
    swap_sets = load_swaps(swap_path) if swap_path is not None else []
    embedder = embedder or SentenceEmbedder()
    raw: list[PreferencePair] = []
    reference = paths[0].name
    for path in paths:
        raw.extend(load_pairs(path))
    pairs = with_prefixes(raw, token_prefix_cutter(embedder.tokenizer))
    train = [p for p in pairs if p.split == "train"]
    heldout = [p for p in pairs if p.split == "heldout"]
    if not train:
        raise DataError(f"no pairs with split 'train' in {', '.join(str(p) for p in paths)}")
    swap_texts = [item[k] for s in swap_sets for item in s["items"] for k in ("prompt", "response")]
    texts = [t for p in pairs for t in (p.prompt, p.chosen, p.rejected)] + swap_texts
    log(
        f"{len(train)} train pairs, {len(heldout)} held-out pairs (prefix pairs included) from "
        f"{', '.join(p.name for p in paths)}; {len(swap_sets)} group-swap sets; embedding {len(set(texts))} texts"
    )
    table = EmbeddingTable(embedder, texts, cache=Path(embedding_cache) if embedding_cache else None, progress=progress)

    def tensors(subset: Sequence[PreferencePair]) -> tuple[torch.Tensor, ...]:
        p, _ = table.take([x.prompt for x in subset])
        c, cs = table.take([x.chosen for x in subset])
        r, rs = table.take([x.rejected for x in subset])
        return p, c, cs, r, rs

    train_p, train_c, train_cs, train_r, train_rs = tensors(train)
    weights = torch.tensor(
        [policy_weight if p.policy_written else (1.0 if p.data_file == reference else template_weight) for p in train]
    )
    kinds_known = torch.tensor([p.kind in KIND_HARMFULNESS for p in train])
    harmfulness = torch.tensor([KIND_HARMFULNESS.get(p.kind, 0.0) for p in train])
    train_swaps = [s for s in swap_sets if s["split"] == "train"]
    swap_tensors = [
        (table.take([i["prompt"] for i in s["items"]]), table.take([i["response"] for i in s["items"]]))
        for s in train_swaps
    ]
    swaps_per_batch = max(1, math.ceil(len(swap_tensors) / max(1, math.ceil(len(train) / batch_size))))
    head = PairHead(embedder.dim, hidden=hidden, dropout=dropout, features=features)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    softplus = torch.nn.functional.softplus
    bar = tqdm(range(epochs), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        head.train()
        order = torch.randperm(len(train), generator=generator)
        swap_order = torch.randperm(len(swap_tensors), generator=generator).tolist() if swap_tensors else []
        total = 0.0
        for step, start in enumerate(range(0, len(train), batch_size)):
            batch = order[start : start + batch_size]
            chosen = head(train_p[batch], train_c[batch], train_cs[batch])
            rejected = head(train_p[batch], train_r[batch], train_rs[batch])
            terms = softplus(rejected - chosen)  # = -log sigmoid(chosen - rejected)
            if calibration:
                terms = terms + calibration * (softplus(-chosen) + softplus(rejected))
            weight = weights[batch]
            loss = (terms * weight).sum() / weight.sum().clamp(min=1e-8)
            known = kinds_known[batch]
            if gate_weight and bool(known.any()):
                logits = head.harmfulness(train_p[batch][known])
                loss = loss + gate_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, harmfulness[batch][known]
                )
            chosen_sets = swap_order[step * swaps_per_batch : (step + 1) * swaps_per_batch]
            if swap_weight and chosen_sets:
                spread = torch.stack(
                    [head(sp, sr, srs).var() for (sp, _), (sr, srs) in (swap_tensors[i] for i in chosen_sets)]
                )
                loss = loss + swap_weight * spread.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        bar.set_postfix(loss=f"{total / len(train):.4f}")
        if not progress and ((epoch + 1) % 5 == 0 or epoch == 0):
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(train):.4f}")

    head.eval()

    @torch.no_grad()
    def score(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        p, _ = table.take(prompts)
        r, rs = table.take(responses)
        return head(p, r, rs).tolist()

    def accuracy(subset: Sequence[PreferencePair]) -> float | None:
        if not subset:
            return None
        prompts = [p.prompt for p in subset]
        c, r = score(prompts, [p.chosen for p in subset]), score(prompts, [p.rejected for p in subset])
        return sum(a > b for a, b in zip(c, r, strict=True)) / len(subset)

    @torch.no_grad()
    def gate_accuracy(subset: Sequence[PreferencePair]) -> float | None:
        kinds = {p.prompt: p.kind for p in subset if p.kind in ("harmful", "benign")}
        if not kinds:
            return None
        logits = head.harmfulness(table.take(list(kinds))[0])
        truth = torch.tensor([k == "harmful" for k in kinds.values()])
        return float(((logits > 0) == truth).float().mean())

    prompts = [p.prompt for p in train]
    chosen_scores = score(prompts, [p.chosen for p in train])
    rejected_scores = score(prompts, [p.rejected for p in train])
    held_ref = [p for p in heldout if p.data_file == reference]
    held_policy = [p for p in heldout if p.policy_written]
    kinds = sorted({p.kind for p in held_ref})
    report = TrainingReport(
        train_pairs=len(train),
        heldout_pairs=len(heldout),
        train_accuracy=sum(a > b for a, b in zip(chosen_scores, rejected_scores, strict=True)) / len(train),
        heldout_full_accuracy=_num(accuracy([p for p in held_ref if p.prefix_tokens is None])),
        heldout_prefix_accuracy=_num(accuracy([p for p in held_ref if p.prefix_tokens is not None])),
        heldout_accuracy=_num(accuracy(held_ref)),
        heldout_accuracy_by_kind={k: _num(accuracy([p for p in held_ref if p.kind == k])) for k in kinds},
        heldout_policy_full_accuracy=accuracy([p for p in held_policy if p.prefix_tokens is None]),
        heldout_policy_prefix_accuracy=accuracy([p for p in held_policy if p.prefix_tokens is not None]),
        heldout_policy_accuracy=accuracy(held_policy),
        heldout_gate_accuracy=gate_accuracy(heldout),
        default_target=quantile(chosen_scores, target_quantile),
        decision_threshold=separating_threshold(chosen_scores, rejected_scores),
        epochs=epochs,
        seed=seed,
        data=[p.name for p in paths] + ([swap_path.name] if swap_path is not None else []),
        heldout_checks=run_checks(pairs, score),
        group_swap=swap_report(swap_sets, score) if swap_sets else {},
        data_sha256={p.name: file_digest(p) for p in [*paths, *([swap_path] if swap_path is not None else [])]},
    )
    out = Path(output) if output is not None else Path(HEAD_FILE)
    if out.suffix != ".safetensors":
        out = out / HEAD_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out))
    meta = {
        "embedder": "all-MiniLM-L6-v2",
        "embedding_dim": embedder.dim,
        "hidden": hidden,
        "features": list(head.feature_names),
        "dropout": dropout,
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "calibration": calibration,
        "gate_weight": gate_weight,
        "policy_weight": policy_weight,
        "template_weight": template_weight,
        "swap_weight": swap_weight,
        "target_quantile": target_quantile,
        **{k: _rounded(v) for k, v in report.as_dict().items()},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    failed = [name for name, r in report.heldout_checks.items() if r["passed"] is False]
    log(
        f"held-out pairwise accuracy {report.heldout_accuracy:.3f} "
        f"(full responses {report.heldout_full_accuracy:.3f}, prefixes {report.heldout_prefix_accuracy:.3f}); "
        f"checks below threshold: {', '.join(failed) or 'none'}; default_target {report.default_target:.3f}; "
        f"wrote {out}"
    )
    return report


def _num(value: float | None) -> float:
    return float("nan") if value is None else value


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def separating_threshold(good: Sequence[float], bad: Sequence[float]) -> float:
    """The t with the highest balanced accuracy of "score >= t" telling `good` scores from `bad` ones
    (the midpoint between two neighbouring scores)."""
    marked = sorted([(v, 1) for v in good] + [(v, 0) for v in bad])
    if not good or not bad:
        raise ValueError("separating_threshold needs good and bad scores")
    best, best_t = -1.0, marked[0][0]
    good_below = bad_below = 0
    for i, (value, is_good) in enumerate(marked):
        # t just above `value`: everything up to i scores below t
        good_below += is_good
        bad_below += 1 - is_good
        if i + 1 < len(marked) and marked[i + 1][0] == value:
            continue
        balanced = (len(good) - good_below) / len(good) + bad_below / len(bad)
        if balanced > best:
            following = marked[i + 1][0] if i + 1 < len(marked) else value + 1.0
            best, best_t = balanced, (value + following) / 2
    return best_t
