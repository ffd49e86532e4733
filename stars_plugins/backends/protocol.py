"""The policy-backend seam: what the decoding loop needs from a loaded policy, wherever it runs.

A `PolicyBackend` is a loaded policy (in-process transformers, a serving engine, ...). It renders
prompts and opens `PolicyBatch`es: rows that advance together one round at a time. Strategies and
the scheduler see only these two protocols; a new engine is one module implementing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from stars_plugins.backends.sampling import RowSampling
from stars_plugins.prompts import PreparedPrompt, PromptInput, PromptOptions

#: Decides, before a token is sampled, which rows end their segment here: (logits, lengths) -> bool[R].
BoundaryRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RoundOutput:
    """What one round produced (CPU tensors): `tokens[r, :lengths[r]]` is row r's new segment,
    the EOS token included where `hit_eos[r]`."""

    tokens: torch.Tensor  # [R, steps]
    lengths: torch.Tensor  # [R]
    hit_eos: torch.Tensor  # [R] bool
    restore: Any = None  # backend-private state that `rollback` needs

    def segment(self, row: int) -> list[int]:
        return self.tokens[row, : int(self.lengths[row])].tolist()


@runtime_checkable
class PolicyBatch(Protocol):
    """Rows that advance together. Each row samples with its own `RowSampling`."""

    @property
    def num_rows(self) -> int: ...

    def run_round(
        self,
        budgets: Sequence[int],
        boundary: BoundaryRule | None = None,
        forced: dict[int, Sequence[int]] | None = None,
    ) -> RoundOutput:
        """Row r samples up to `budgets[r]` tokens (ending early at EOS or where `boundary` says);
        rows in `forced` replay the given token ids instead of sampling."""
        ...

    def rollback(self, rows: Sequence[int], out: RoundOutput) -> None:
        """Forget the last round's segment in `rows`."""
        ...

    def select_rows(self, source: Sequence[int]) -> None:
        """Row r becomes a copy of old row `source[r]` (copies, drops, reorders rows)."""
        ...

    def merge(self, other: PolicyBatch) -> None:
        """Append `other`'s rows (admission); `other` is consumed."""
        ...

    def mergeable(self) -> bool: ...

    def compact(self) -> Any:
        """Housekeeping between rounds (may do nothing)."""
        ...

    def free(self) -> None: ...


@runtime_checkable
class PolicyBackend(Protocol):
    """A loaded policy. `tokenizer` is used for rendering prompts and decoding text only."""

    name: str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    context_window: int
    tokenizer: Any
    supports_boundary: bool  # can end segments by a logits rule (CARDS)

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def prepare(self, prompts: Sequence[PromptInput], options: PromptOptions) -> list[PreparedPrompt]: ...

    def open_batch(
        self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ) -> PolicyBatch:
        """Prefill `prompts`, prompt i on `copies[i]` rows; `sampling` has one entry per row."""
        ...


__all__ = ["BoundaryRule", "PolicyBackend", "PolicyBatch", "RoundOutput", "RowSampling"]
