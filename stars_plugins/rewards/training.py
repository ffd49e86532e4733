"""`stars train-reward`: reproduce the "harmless" head from the shipped preference data.

Bradley-Terry: minimise -log sigmoid(s(prompt, chosen) - s(prompt, rejected)) over pairs. The
sentence embedder stays frozen, so every text is embedded once and training the head takes seconds.
STARS scores unfinished answers, so each pair also yields prefix pairs (the first 10 to 60 tokens
of both responses). The split into train and held-out is by prompt, as the data file marks it.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from stars_plugins.rewards.harmless import HEAD_FILE, PairHead, SentenceEmbedder

REQUIRED_FIELDS = {"prompt_id": str, "split": str, "kind": str, "prompt": str, "chosen": str, "rejected": str}
PREFIX_TOKENS = (10, 20, 35, 60)


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


def default_data_path() -> Path:
    return Path(str(resources.files("stars_plugins").joinpath("data", "harmless_pairs.jsonl")))


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read (prompt, chosen, rejected) pairs, one JSON object per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference data file {str(path)!r} does not exist")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for name, kind in REQUIRED_FIELDS.items():
            if name not in row:
                raise DataError(f"{where}: missing field {name!r}")
            if not isinstance(row[name], kind):
                raise DataError(f"{where}: field {name!r} must be a {kind.__name__}")
        if row["split"] not in ("train", "heldout"):
            raise DataError(f"{where}: split must be 'train' or 'heldout', got {row['split']!r}")
        if not row["prompt"].strip():
            raise DataError(f"{where}: empty prompt")
        pairs.append(PreferencePair(
            row["prompt_id"], row["split"], row["kind"], row["prompt"], row["chosen"], row["rejected"],
            str(row.get("category", "")), str(row.get("rejected_kind", "")),
        ))
    if not pairs:
        raise DataError(f"{path}: no preference pairs")
    return pairs


def with_prefixes(pairs: Sequence[PreferencePair], cut: Callable[[str, int], str | None],
                  lengths: Sequence[int] = PREFIX_TOKENS) -> list[PreferencePair]:
    """Add prefix pairs: both responses cut to their first n tokens, for each n shorter than both.
    `cut(text, n)` returns the first n tokens of text, or None when it has no more than n."""
    out = list(pairs)
    for pair in pairs:
        for n in lengths:
            chosen, rejected = cut(pair.chosen, n), cut(pair.rejected, n)
            if chosen is not None and rejected is not None:
                out.append(PreferencePair(
                    pair.prompt_id, pair.split, pair.kind, pair.prompt, chosen, rejected,
                    pair.category, pair.rejected_kind, prefix_tokens=n,
                ))
    return out


def token_prefix_cutter(tokenizer: Any) -> Callable[[str, int], str | None]:
    """Cut text after its n-th token (by character offsets, so the prefix is the original text)."""

    def cut(text: str, n: int) -> str | None:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text[: offsets[n - 1][1]] if len(offsets) > n else None

    return cut


@dataclass
class TrainingReport:
    train_pairs: int
    heldout_pairs: int
    train_accuracy: float
    heldout_accuracy: float
    heldout_full_accuracy: float
    heldout_prefix_accuracy: float
    heldout_accuracy_by_kind: dict[str, float]
    default_target: float
    epochs: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_harmless_head(
    data: str | Path | None = None,
    output: str | Path | None = None,
    *,
    seed: int = 0,
    epochs: int = 20,
    hidden: int = 256,
    dropout: float = 0.3,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    batch_size: int = 64,
    embedder: SentenceEmbedder | None = None,
    log: Callable[[str], None] = print,
) -> TrainingReport:
    """Train the head on the train split, report held-out pairwise accuracy, save safetensors + JSON."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    random.seed(seed)
    data_path = Path(data) if data is not None else default_data_path()
    embedder = embedder or SentenceEmbedder()
    pairs = with_prefixes(load_pairs(data_path), token_prefix_cutter(embedder.tokenizer))
    train = [p for p in pairs if p.split == "train"]
    heldout = [p for p in pairs if p.split == "heldout"]
    log(f"{len(train)} train pairs, {len(heldout)} held-out pairs (prefix pairs included); embedding texts")

    texts = sorted({t for p in pairs for t in (p.prompt, p.chosen, p.rejected)})
    index = {t: i for i, t in enumerate(texts)}
    vectors = embedder.encode(texts).cpu()

    def tensors(subset: Sequence[PreferencePair]) -> tuple[torch.Tensor, ...]:
        take = lambda attr: vectors[[index[getattr(p, attr)] for p in subset]]  # noqa: E731
        return take("prompt"), take("chosen"), take("rejected")

    train_p, train_c, train_r = tensors(train)
    head = PairHead(embedder.dim, hidden=hidden, dropout=dropout)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(train), batch_size):
            batch = order[start : start + batch_size]
            margin = head(train_p[batch], train_c[batch]) - head(train_p[batch], train_r[batch])
            loss = torch.nn.functional.softplus(-margin).mean()  # = -log sigmoid(margin)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        if (epoch + 1) % 5 == 0 or epoch == 0:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(train):.4f}")

    head.eval()
    with torch.no_grad():
        def accuracy(subset: Sequence[PreferencePair]) -> float:
            if not subset:
                return float("nan")
            p, c, r = tensors(subset)
            return float((head(p, c) > head(p, r)).float().mean())

        full_chosen = [p for p in train if p.prefix_tokens is None]
        p, c, _ = tensors(full_chosen)
        chosen_scores = sorted(head(p, c).tolist())
    kinds = sorted({p.kind for p in heldout})
    report = TrainingReport(
        train_pairs=len(train),
        heldout_pairs=len(heldout),
        train_accuracy=accuracy(train),
        heldout_accuracy=accuracy(heldout),
        heldout_full_accuracy=accuracy([p for p in heldout if p.prefix_tokens is None]),
        heldout_prefix_accuracy=accuracy([p for p in heldout if p.prefix_tokens is not None]),
        heldout_accuracy_by_kind={k: accuracy([p for p in heldout if p.kind == k]) for k in kinds},
        # A target most good answers reach: the 25th percentile of chosen responses' scores.
        default_target=_quantile(chosen_scores, 0.25),
        epochs=epochs,
        seed=seed,
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
        "data": data_path.name,
        **report.as_dict(),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"held-out pairwise accuracy {report.heldout_accuracy:.3f} "
        f"(full responses {report.heldout_full_accuracy:.3f}, prefixes {report.heldout_prefix_accuracy:.3f}); "
        f"wrote {out}")
    return report


def _quantile(values: Sequence[float], q: float) -> float:
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
