"""The policy-backend seam: what the decoding loop needs from a loaded policy, wherever it runs.

A `PolicyBackend` is a loaded policy (in-process transformers, a serving engine, ...). It renders
prompts and opens `PolicyBatch`es: rows that advance together one round at a time. Strategies and
the scheduler see only these two protocols; a new engine is one module implementing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from stars_plugins.backends.sampling import RowSampling
from stars_plugins.prompts import PreparedPrompt, PromptInput, PromptOptions

#: Decides, before a token is sampled, which rows end their segment here: (logits, lengths) -> bool[R].
BoundaryRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RoundOutput:
    """What one round produced (CPU tensors): `tokens[r, :lengths[r]]` is row r's new segment,
    the EOS token included where `hit_eos[r]`. A row in `errors` produced nothing: its segment
    request failed (a serving engine's 4xx for that prompt, say), which fails that row's request
    only; the other rows' segments stand."""

    tokens: torch.Tensor  # [R, steps]
    lengths: torch.Tensor  # [R]
    hit_eos: torch.Tensor  # [R] bool
    restore: Any = None  # backend-private state that `rollback` needs
    errors: dict[int, BaseException] = field(default_factory=dict)
    #: per row, under a constraint: whether its output after this round is a complete match of
    #: its grammar (None: no row of the batch is constrained)
    complete: list[bool] | None = None

    def segment(self, row: int) -> list[int]:
        return self.tokens[row, : int(self.lengths[row])].tolist()


@dataclass
class SegmentDone:
    """Row `row` finished its current segment: `tokens` (EOS included where `hit_eos`). With
    `error` set the row produced nothing: its segment request failed (fails its request only)."""

    row: int
    tokens: list[int]
    hit_eos: bool = False
    error: BaseException | None = None
    #: under a constraint: whether the row's output after this segment is a complete match of its
    #: grammar (None: the row's batch has no constrained row)
    complete: bool | None = None


@runtime_checkable
class PolicyBatch(Protocol):
    """Rows that share one batch, each on its own segment clock. Each row samples with its own
    `RowSampling`.

    Per-row clocks: `begin` starts a segment on some rows, `advance(steps)` decodes every row that
    is in a segment (the others idle and draw no random numbers) and returns the rows whose
    segment ended, `rollback` drops a row's current segment. `run_round` is the lockstep special
    case: every row begins together and the round lasts until the longest segment ends."""

    @property
    def num_rows(self) -> int: ...

    def begin(
        self,
        rows: Sequence[int],
        budgets: Sequence[int],
        forced: dict[int, Sequence[int]] | None = None,
        boundaries: dict[int, BoundaryRule] | None = None,
    ) -> None:
        """Start a segment of at most `budgets[i]` tokens on `rows[i]` (ending early at EOS or
        where that row's boundary rule says); rows in `forced` replay the given ids."""
        ...

    def advance(self, steps: int) -> list[SegmentDone]:
        """Decode up to `steps` tokens for the rows in a segment; return the segments that ended
        (each reported once). A backend without a token clock (a serving engine) returns as soon
        as some segment requests have come back."""
        ...

    def run_round(
        self,
        budgets: Sequence[int],
        boundary: BoundaryRule | None = None,
        forced: dict[int, Sequence[int]] | None = None,
    ) -> RoundOutput:
        """Row r samples up to `budgets[r]` tokens (ending early at EOS or where `boundary` says);
        rows in `forced` replay the given token ids instead of sampling."""
        ...

    def rollback(self, rows: Sequence[int], out: RoundOutput | None = None) -> None:
        """Forget the current (last) segment of `rows`."""
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
    """A loaded policy. Its text side (rendering prompts, decoding, counting tokens) is the
    shared `prompts.TokenizerSide` over `tokenizer`, the served model's tokenizer."""

    name: str
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    context_window: int
    tokenizer: Any
    supports_boundary: bool  # can end segments by a logits rule (CARDS)
    per_row_clocks: bool  # its batches implement `begin` / `advance` (one shared batch per policy)

    @property
    def has_chat_template(self) -> bool: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def render(self, prompt: PromptInput, options: PromptOptions, index: int = 0) -> tuple[list[int], str]:
        """Token ids for the policy and the prompt text for the reward model (no length check)."""
        ...

    def prepare(self, prompts: Sequence[PromptInput], options: PromptOptions) -> list[PreparedPrompt]:
        """Render every prompt and check that it fits the context window with its token budget."""
        ...

    def token_ids(self, text: str) -> list[int]: ...

    def open_batch(
        self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ) -> PolicyBatch:
        """Prefill `prompts`, prompt i on `copies[i]` rows; `sampling` has one entry per row."""
        ...


__all__ = ["BoundaryRule", "PolicyBackend", "PolicyBatch", "RoundOutput", "RowSampling", "SegmentDone"]
