"""Per-row grammar state for the batched sampler: token masks, and the state following each row
through a STARS round.

`GrammarRows` sits beside `BatchSampler` and is called at the same seams as the batch's rows:
- `mask(logits)`: before sampling, -inf on every token the row's grammar forbids (constrained rows
  only; an unconstrained batch never builds one of these);
- `observe(tokens, live)`: after sampling, each live constrained row's matcher accepts its token;
- `rollback(rows, counts)`: a rejected segment's tokens are taken back (xgrammar's rollback, with
  a window of the row's whole token budget);
- `select(source)`: rows are copied (siblings take the accepted candidate's state: `fork`), dropped
  or reordered;
- `state()`: each row's accepted tokens, to rebuild the matchers elsewhere (batch merge, eviction).
Rows are released when dropped by `select` or when the sampler is discarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class RowGrammar:
    """A row's constraint: the compiled grammar, the tokens it has already accepted (replayed when
    the row is built: a re-admitted request resumes mid-grammar), and how many tokens a rollback
    may take back (the request's token budget is always enough)."""

    compiled: Any  # xgrammar.CompiledGrammar
    accepted: tuple[int, ...] = ()
    max_rollback: int = 0
    key: Any = None  # the Constraint (for equality and diagnostics)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowGrammar):
            return NotImplemented
        return (self.key, self.accepted, self.max_rollback) == (other.key, other.accepted, other.max_rollback) and (
            self.key is not None or self.compiled is other.compiled
        )

    def __hash__(self) -> int:
        return hash((self.key, self.accepted, self.max_rollback))


def apply_bitmask_cpu(logits: torch.Tensor, bitmask: torch.Tensor, vocab_size: int) -> None:
    """Set `logits[r, t]` to -inf where bit t of `bitmask[r]` (int32 words, little-endian bits, as
    xgrammar fills them) is 0, for t < `vocab_size`; in place. The same result as xgrammar's
    `apply_token_bitmask_inplace` within the vocabulary, but its CPU kernel tests one bit at a time:
    numpy's `unpackbits` on the inverted words was about 8x faster at 32 rows x 49,152 tokens, where
    the kernel had taken a quarter of a constrained batch's step (`stars bench --overhead --json-schema`)."""
    forbidden_bits = np.invert(bitmask.contiguous().numpy())
    forbidden = np.unpackbits(forbidden_bits.view(np.uint8), axis=-1, bitorder="little")
    logits[:, :vocab_size].masked_fill_(torch.from_numpy(forbidden).view(torch.bool)[:, :vocab_size], float("-inf"))


class _Row:
    """One constrained row: its matcher and the tokens it accepted (for `state`)."""

    __slots__ = ("grammar", "matcher", "tokens")

    def __init__(self, grammar: RowGrammar, matcher: Any, tokens: list[int]):
        self.grammar = grammar
        self.matcher = matcher
        self.tokens = tokens

    @classmethod
    def build(cls, grammar: RowGrammar) -> _Row:
        import xgrammar

        matcher = xgrammar.GrammarMatcher(grammar.compiled, max_rollback_tokens=max(grammar.max_rollback, 1))
        for token in grammar.accepted:
            if not matcher.accept_token(int(token)):
                raise ValueError(f"token {token} of the accepted prefix does not fit the row's grammar")
        return cls(grammar, matcher, list(grammar.accepted))

    def fork(self) -> _Row:
        return _Row(self.grammar, self.matcher.fork(), list(self.tokens))

    @property
    def complete(self) -> bool:
        return bool(self.matcher.is_completed() or self.matcher.is_terminated())


class GrammarRows:
    """The grammar state of every row of one batch (None for unconstrained rows)."""

    def __init__(self, grammars: Sequence[RowGrammar | None], vocab_size: int, device: torch.device):
        self.vocab_size = int(vocab_size)
        self.device = device
        self.rows: list[_Row | None] = []
        self.extend(grammars)

    # ------------------------------------------------------------------ rows
    def extend(self, grammars: Sequence[RowGrammar | None]) -> None:
        self.rows.extend(None if g is None else _Row.build(g) for g in grammars)
        self._refresh()

    def select(self, source: Sequence[int]) -> None:
        """Row r := old row source[r]; the first copy keeps the matcher, later copies fork it."""
        used: set[int] = set()
        rows: list[_Row | None] = []
        for i in source:
            row = self.rows[i]
            if row is not None and i in used:
                row = row.fork()
            used.add(i)
            rows.append(row)
        self.rows = rows
        self._refresh()

    def state(self, grammars: Sequence[RowGrammar | None]) -> list[RowGrammar | None]:
        """`grammars` (the rows' settings) with each row's accepted tokens as of now."""
        return [
            None if row is None else replace(row.grammar, accepted=tuple(row.tokens))
            for row, g in zip(self.rows, grammars, strict=True)
        ]

    def _refresh(self) -> None:
        self.constrained = [i for i, row in enumerate(self.rows) if row is not None]
        self._position = {row: j for j, row in enumerate(self.constrained)}
        self.index = torch.tensor(self.constrained, dtype=torch.long, device=self.device)
        self._bitmask = None

    @property
    def any(self) -> bool:
        return bool(self.constrained)

    # ------------------------------------------------------------------ per step
    def fill(self) -> torch.Tensor:
        """The next-token bitmask of every constrained row (in `self.constrained` order): int32
        [rows, ceil(vocab / 32)], bit t of a row set where token t is allowed. A terminated row (its
        stop token accepted) allows everything: it samples nothing more this round."""
        import xgrammar

        rows = len(self.constrained)
        if self._bitmask is None or self._bitmask.shape[0] != rows:
            self._bitmask = xgrammar.allocate_token_bitmask(rows, self.vocab_size)
        bitmask = self._bitmask
        xgrammar.reset_token_bitmask(bitmask)
        for j, i in enumerate(self.constrained):
            matcher = self.rows[i].matcher
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, j)
        return bitmask

    def apply(
        self, logits: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int] | None = None, *, in_place: bool = False
    ) -> torch.Tensor:
        """`logits` with the forbidden tokens of batch rows `rows` (default: every constrained row;
        `bitmask` from `fill`) set to -inf; other rows untouched. `in_place`: write into `logits`
        (saves a copy of the [rows, vocabulary] tensor) instead of returning a new tensor."""
        import xgrammar

        rows = self.constrained if rows is None else list(rows)
        if not rows:
            return logits
        position = self._position
        masks = bitmask if rows == self.constrained else bitmask[[position[i] for i in rows]]
        if logits.device.type != "cpu":
            masks = masks.to(logits.device, non_blocking=True)
        every_row = len(rows) == logits.shape[0]
        if every_row:  # no gather / scatter: mask the whole tensor
            target = logits if in_place else logits.clone()
        else:
            index = torch.tensor(rows, dtype=torch.long, device=logits.device)
            target = logits.index_select(0, index)
        vocab_size = min(self.vocab_size, target.shape[-1])
        if target.device.type == "cpu":
            apply_bitmask_cpu(target, masks, vocab_size)
        else:  # xgrammar's CUDA / Triton kernels
            xgrammar.apply_token_bitmask_inplace(target, masks, vocab_size=vocab_size)
        if target.shape[-1] > self.vocab_size:  # logits wider than the vocabulary: padding ids are never valid
            target[:, self.vocab_size :] = float("-inf")
        if every_row:
            return target
        return logits.index_copy_(0, index, target) if in_place else logits.index_copy(0, index, target)

    def mask(self, logits: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
        """`logits` with every token a constrained row's grammar forbids set to -inf (`fill` + `apply`)."""
        if not self.constrained:
            return logits
        return self.apply(logits, self.fill(), in_place=in_place)

    def bitmask_rows(self, bitmask: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """The rows of `bitmask` (from `fill`) of batch rows `rows`."""
        return bitmask[[self._position[i] for i in rows]]

    def observe(self, tokens: torch.Tensor, live: torch.Tensor) -> None:
        """Each live constrained row accepts its token (sampled under the mask, or replayed)."""
        if not self.constrained:
            return
        picked = tokens.index_select(0, self.index).tolist()
        alive = live.index_select(0, self.index).tolist()
        for i, token, on in zip(self.constrained, picked, alive, strict=True):
            if not on:
                continue
            row = self.rows[i]
            if row.matcher.is_terminated():
                continue
            if not row.matcher.accept_token(int(token)):
                raise RuntimeError(f"row {i}: token {token} does not fit its grammar")
            row.tokens.append(int(token))

    def rollback(self, rows: Sequence[int], counts: Sequence[int]) -> None:
        """Take back the last `counts[k]` tokens of row `rows[k]` (its rejected segment)."""
        for i, n in zip(rows, counts, strict=True):
            row = self.rows[i]
            n = min(int(n), len(row.tokens)) if row is not None else 0
            if n > 0:
                row.matcher.rollback(n)
                del row.tokens[-n:]

    def complete(self) -> list[bool]:
        """Per row: whether its output so far is a complete match (True for unconstrained rows)."""
        return [True if row is None else row.complete for row in self.rows]

    def release(self) -> None:
        self.rows = []
        self._refresh()
