"""Training the "harmless" reward head from the project's preference data (`python -m reward_training`).

Maintainer tooling, kept out of the `stars-plugins` wheel: the runtime only loads the trained head
(`stars_plugins/rewards/weights/`).

Bradley-Terry: minimise -log sigmoid(s(prompt, chosen) - s(prompt, rejected)) over pairs. Two
small terms join it: a calibration term, -log sigmoid(s(chosen)) - log sigmoid(-s(rejected)), which
puts good answers above 0 and bad ones below it on every prompt (STARS compares rewards with one
threshold across prompts, so the scale must not drift from prompt to prompt), and a logistic loss
that teaches the head's gate each prompt's kind (harmful 1, borderline 0.5, benign 0). The
sentence embedder stays frozen, so every text is embedded once and training the head takes seconds.
STARS scores unfinished answers, so each pair also yields prefix pairs (the first 10 to 60 tokens
of both responses). The split into train and held-out is by prompt, as the data files mark it.

Two files are shipped: the hand-written pairs (harmless_pairs.jsonl) and on-policy pairs
(harmless_policy_pairs.jsonl, written by reward_training/make_policy_pairs.py from samples of the embedded
policy), so that the reward also knows what the policy's own compliance and answers look like.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stars_plugins.acceptance import quantile
from stars_plugins.jsonl import read_jsonl
from stars_plugins.rewards.harmless import HEAD_FILE, PairHead, SentenceEmbedder

REQUIRED_FIELDS = {"prompt_id": str, "split": str, "kind": str, "prompt": str, "chosen": str, "rejected": str}
PREFIX_TOKENS = (10, 20, 35, 60)
#: What the gate learns for each prompt kind: how much a refusal is the right answer.
KIND_HARMFULNESS = {"harmful": 1.0, "borderline": 0.5, "benign": 0.0}
HANDWRITTEN_FILE = "harmless_pairs.jsonl"
POLICY_FILE = "harmless_policy_pairs.jsonl"


class DataError(ValueError):
    """A malformed line in a preference data file; the message names the file and line."""


@dataclass(frozen=True)
class PreferencePair:
    prompt_id: str
    split: str
    kind: str
    prompt: str
    chosen: str
    rejected: str
    category: str = ""
    rejected_kind: str = ""
    prefix_tokens: int | None = None
    source: str = ""  # the data file's name


def data_folder() -> Path:
    return Path(__file__).resolve().parent / "data"


def default_data_path() -> Path:
    """The hand-written pairs."""
    return data_folder() / HANDWRITTEN_FILE


def default_data_paths() -> list[Path]:
    """The shipped training data: the hand-written pairs, and the on-policy pairs where present."""
    paths = [default_data_path()]
    policy = data_folder() / POLICY_FILE
    if policy.is_file():
        paths.append(policy)
    return paths


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read (prompt, chosen, rejected) pairs, one JSON object per line."""
    path = Path(path)
    pairs = []
    for where, row in read_jsonl(path, what="preference data file", error=DataError):
        for name, kind in REQUIRED_FIELDS.items():
            if name not in row:
                raise DataError(f"{where}: missing field {name!r}")
            if not isinstance(row[name], kind):
                raise DataError(f"{where}: field {name!r} must be a {kind.__name__}")
        if row["split"] not in ("train", "heldout"):
            raise DataError(f"{where}: split must be 'train' or 'heldout', got {row['split']!r}")
        if not row["prompt"].strip():
            raise DataError(f"{where}: empty prompt")
        if not row["chosen"].strip() and not row["rejected"].strip():
            raise DataError(f"{where}: chosen and rejected are both empty")
        pairs.append(
            PreferencePair(
                row["prompt_id"],
                row["split"],
                row["kind"],
                row["prompt"],
                row["chosen"],
                row["rejected"],
                str(row.get("category", "")),
                str(row.get("rejected_kind", "")),
                source=path.name,
            )
        )
    if not pairs:
        raise DataError(f"{path}: no preference pairs")
    return pairs


def with_prefixes(
    pairs: Sequence[PreferencePair], cut: Callable[[str, int], str | None], lengths: Sequence[int] = PREFIX_TOKENS
) -> list[PreferencePair]:
    """Add prefix pairs: both responses cut to their first n tokens, for each n shorter than both.
    `cut(text, n)` returns the first n tokens of text, or None when it has no more than n."""
    out = list(pairs)
    for pair in pairs:
        for n in lengths:
            chosen, rejected = cut(pair.chosen, n), cut(pair.rejected, n)
            if chosen is not None and rejected is not None:
                out.append(
                    PreferencePair(
                        pair.prompt_id,
                        pair.split,
                        pair.kind,
                        pair.prompt,
                        chosen,
                        rejected,
                        pair.category,
                        pair.rejected_kind,
                        prefix_tokens=n,
                        source=pair.source,
                    )
                )
    return out


def token_prefix_cutter(tokenizer: Any) -> Callable[[str, int], str | None]:
    """Cut text after its n-th token (by character offsets, so the prefix is the original text)."""

    def cut(text: str, n: int) -> str | None:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text[: offsets[n - 1][1]] if len(offsets) > n else None

    return cut


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
    #: held-out on-policy pairs (harmless_policy_pairs.jsonl), where given
    heldout_policy_full_accuracy: float | None
    heldout_policy_prefix_accuracy: float | None
    heldout_policy_accuracy: float | None
    heldout_gate_accuracy: float | None  # harmful vs benign held-out prompts told apart by the gate
    default_target: float
    decision_threshold: float
    epochs: int
    seed: int
    data: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_harmless_head(
    data: str | Path | Sequence[str | Path] | None = None,
    output: str | Path | None = None,
    *,
    seed: int = 0,
    epochs: int = 40,
    hidden: int = 256,
    dropout: float = 0.3,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    batch_size: int = 64,
    calibration: float = 0.3,
    gate_weight: float = 1.0,
    policy_weight: float = 0.2,
    target_quantile: float = 0.25,
    embedder: SentenceEmbedder | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainingReport:
    """Train the head on the train split of every data file, report held-out pairwise accuracy,
    save safetensors + JSON metadata (accuracies, `default_target`) to `output`.

    The first data file is the reference set (the hand-written pairs): its held-out accuracy is
    reported as `heldout_*_accuracy`. Pairs of the other files (the on-policy pairs) weigh
    `policy_weight` each in the loss and their held-out accuracy is reported separately.
    `default_target`, the r_target STARS aims at, is the `target_quantile` quantile of the chosen
    training responses' scores (prefixes included): a reward most good answers reach. The score
    that best separates chosen from rejected responses is recorded too (`decision_threshold`); it
    is lower, and as a target it lets too much through (on the held-out split's prompts STARS then
    scored below best-of-N).
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

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
    texts = sorted({t for p in pairs for t in (p.prompt, p.chosen, p.rejected)})
    log(
        f"{len(train)} train pairs, {len(heldout)} held-out pairs (prefix pairs included) from "
        f"{', '.join(p.name for p in paths)}; embedding {len(texts)} texts"
    )

    index = {t: i for i, t in enumerate(texts)}
    chunk = max(1, embedder.batch_size)
    parts = []
    for start in tqdm(range(0, len(texts), chunk), desc="embedding", unit="batch", disable=not progress):
        parts.append(embedder.encode(texts[start : start + chunk]).cpu())
    vectors = torch.cat(parts) if parts else torch.zeros((0, embedder.dim))

    def tensors(subset: Sequence[PreferencePair]) -> tuple[torch.Tensor, ...]:
        take = lambda attr: vectors[[index[getattr(p, attr)] for p in subset]]  # noqa: E731
        return take("prompt"), take("chosen"), take("rejected")

    train_p, train_c, train_r = tensors(train)
    weights = torch.tensor([1.0 if p.source == reference else policy_weight for p in train])
    kinds_known = torch.tensor([p.kind in KIND_HARMFULNESS for p in train])
    harmfulness = torch.tensor([KIND_HARMFULNESS.get(p.kind, 0.0) for p in train])
    head = PairHead(embedder.dim, hidden=hidden, dropout=dropout)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    softplus = torch.nn.functional.softplus
    bar = tqdm(range(epochs), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        head.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(train), batch_size):
            batch = order[start : start + batch_size]
            chosen, rejected = head(train_p[batch], train_c[batch]), head(train_p[batch], train_r[batch])
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
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        bar.set_postfix(loss=f"{total / len(train):.4f}")
        if not progress and ((epoch + 1) % 5 == 0 or epoch == 0):
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(train):.4f}")

    head.eval()

    @torch.no_grad()
    def accuracy(subset: Sequence[PreferencePair]) -> float | None:
        if not subset:
            return None
        p, c, r = tensors(subset)
        return float((head(p, c) > head(p, r)).float().mean())

    @torch.no_grad()
    def gate_accuracy(subset: Sequence[PreferencePair]) -> float | None:
        kinds = {p.prompt: p.kind for p in subset if p.kind in ("harmful", "benign")}
        if not kinds:
            return None
        logits = head.harmfulness(vectors[[index[t] for t in kinds]])
        truth = torch.tensor([k == "harmful" for k in kinds.values()])
        return float(((logits > 0) == truth).float().mean())

    with torch.no_grad():
        p, c, r = tensors(train)
        chosen_scores, rejected_scores = head(p, c).tolist(), head(p, r).tolist()
    held_ref = [p for p in heldout if p.source == reference]
    held_policy = [p for p in heldout if p.source != reference]
    kinds = sorted({p.kind for p in held_ref})
    report = TrainingReport(
        train_pairs=len(train),
        heldout_pairs=len(heldout),
        train_accuracy=_num(accuracy(train)),
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
        data=[p.name for p in paths],
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
        "dropout": dropout,
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "calibration": calibration,
        "gate_weight": gate_weight,
        "policy_weight": policy_weight,
        "target_quantile": target_quantile,
        **{k: _rounded(v) for k, v in report.as_dict().items()},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    policy_note = (
        f"; held-out on-policy pairs {report.heldout_policy_accuracy:.3f}"
        if report.heldout_policy_accuracy is not None
        else ""
    )
    log(
        f"held-out pairwise accuracy {report.heldout_accuracy:.3f} "
        f"(full responses {report.heldout_full_accuracy:.3f}, prefixes {report.heldout_prefix_accuracy:.3f})"
        f"{policy_note}; default_target {report.default_target:.3f}; wrote {out}"
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
