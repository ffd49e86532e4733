"""The preference data of the "harmless" reward: reading pairs and group-swap sets, and prefix pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stars_plugins.jsonl import read_jsonl

REQUIRED_FIELDS = {"prompt_id": str, "split": str, "kind": str, "prompt": str, "chosen": str, "rejected": str}
OPTIONAL_TEXT_FIELDS = ("category", "rejected_kind", "chosen_kind", "family", "source", "license")
PREFIX_TOKENS = (10, 20, 35, 60)
HANDWRITTEN_FILE = "harmless_pairs.jsonl"
POLICY_FILE = "harmless_policy_pairs.jsonl"
CATEGORY_FILE = "harmless_category_pairs.jsonl"
CATEGORY_POLICY_FILE = "harmless_category_policy_pairs.jsonl"
SWAP_FILE = "harmless_group_swaps.jsonl"
#: The shipped training data, in this order (the first is the reference set).
PAIR_FILES = (HANDWRITTEN_FILE, POLICY_FILE, CATEGORY_FILE, CATEGORY_POLICY_FILE)


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
    data_file: str = ""  # the data file's name
    chosen_kind: str = ""
    family: str = ""
    source: str = ""  # where the texts come from, as the line states it
    license: str = ""

    @property
    def policy_written(self) -> bool:
        """Either side was written by the policy (on-policy pairs weigh less in training)."""
        return self.chosen_kind.startswith("policy_") or self.rejected_kind.startswith("policy_")


def data_folder() -> Path:
    return Path(__file__).resolve().parent / "data"


def default_data_path() -> Path:
    """The hand-written pairs."""
    return data_folder() / HANDWRITTEN_FILE


def default_data_paths() -> list[Path]:
    """The shipped training data that is present, reference set first."""
    return [data_folder() / name for name in PAIR_FILES if (data_folder() / name).is_file()]


def default_swap_path() -> Path | None:
    path = data_folder() / SWAP_FILE
    return path if path.is_file() else None


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
        extra = {name: str(row.get(name, "")) for name in OPTIONAL_TEXT_FIELDS}
        pairs.append(
            PreferencePair(
                row["prompt_id"],
                row["split"],
                row["kind"],
                row["prompt"],
                row["chosen"],
                row["rejected"],
                data_file=path.name,
                **extra,
            )
        )
    if not pairs:
        raise DataError(f"{path}: no preference pairs")
    return pairs


def load_swaps(path: str | Path) -> list[dict[str, Any]]:
    """Group-swap sets: the same prompt and response written for several groups (`items`)."""
    sets = []
    for where, row in read_jsonl(path, what="group-swap file", error=DataError):
        items = row.get("items")
        if row.get("split") not in ("train", "heldout") or not isinstance(items, list) or len(items) < 2:
            raise DataError(f"{where}: needs split (train/heldout) and at least two items")
        for item in items:
            if not all(isinstance(item.get(k), str) and item[k] for k in ("group", "prompt", "response")):
                raise DataError(f"{where}: every item needs non-empty group, prompt and response strings")
        sets.append(row)
    return sets


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
                out.append(replace(pair, chosen=chosen, rejected=rejected, prefix_tokens=n))
    return out


def token_prefix_cutter(tokenizer: Any) -> Callable[[str, int], str | None]:
    """Cut text after its n-th token (by character offsets, so the prefix is the original text)."""

    def cut(text: str, n: int) -> str | None:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text[: offsets[n - 1][1]] if len(offsets) > n else None

    return cut
