"""Token sampling for a batch whose rows may each have their own settings and random stream.

Speed: one token per row per step, with no Python loop over rows and no host synchronisation, and
no sort of the vocabulary. Rows without truncation draw by inverse CDF over the unsorted
probabilities; top-k rows take a partial `topk` of the k largest (top-p then applies inside those);
top-p rows without top-k find their nucleus by a two-pass radix selection on the probabilities'
bits (O(V), where a sort is O(V log V)) and draw by inverse CDF over the unsorted survivors.

Randomness: row r draws `u = hash(seed, stream, counter)` with a counter-based hash (splitmix64 in
int64 tensor ops), where `counter` counts the draws that row actually used. A row's numbers thus
depend on its request's seed and its own history only, never on what shares the batch or how many
steps the batch ran. Copies of one row (siblings restarting from an accepted candidate) keep
drawing different numbers: the first copy keeps the source's stream, later copies get new streams
derived from it, in the order the copies appear (which is the request's own row order).

Constraints (structured output): a row whose `RowSampling.grammar` is set samples only tokens its
grammar allows. The mask is applied to the logits before temperature, top-k and top-p, and only to
constrained rows (an unconstrained batch does no mask work at all); the random draw stays the
row's own, so a seeded constrained row gives the same tokens whatever shares its batch. The grammar
state (`constraints.GrammarRows`) follows the rows: `observe` after each step, `rollback` for a
rejected segment, `select` for copies, and `state` to resume elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from stars_plugins.constraints.rows import GrammarRows, RowGrammar


@dataclass(frozen=True)
class RowSampling:
    """Sampling settings of one batch row. temperature 0 means greedy.

    `seed` is the request's seed; `stream` the candidate index within the request (rows of one
    request must not draw identical numbers). Draws are reproducible whatever shares the batch.
    `counter`: draws this stream has already used (to resume a row exactly, see `BatchSampler.state`).
    `grammar`: the row's structured-output constraint and the tokens it already accepted, or None."""

    temperature: float
    top_k: int
    top_p: float
    seed: int
    stream: int = 0
    counter: int = 0
    grammar: RowGrammar | None = None


# splitmix64 constants, as signed int64 (torch has no uint64 arithmetic).
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch shifts arithmetically)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser of `x + golden`, elementwise on int64 (wrapping arithmetic)."""
    z = x + _signed(_GOLDEN)
    z = (z ^ _shr(z, 30)) * _signed(_MIX1)
    z = (z ^ _shr(z, 27)) * _signed(_MIX2)
    return z ^ _shr(z, 31)


def splitmix64_reference(x: int) -> int:
    """Pure-Python splitmix64 of `x` (unsigned result), to check the tensor version against."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """One int64 key per (seed, stream); draws are `uniform(key, counter)`."""
    return splitmix64(splitmix64(seed) ^ stream)


def uniform(key: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """A float32 in [0, 1 - 2**-23] per element: the top 23 bits of hash(key, counter)."""
    bits = _shr(splitmix64(key ^ (counter * _signed(_GOLDEN))), 41)
    return bits.to(torch.float32) * (1.0 / (1 << 23))


class BatchSampler:
    """Samples one token per row; rows keep independent, reproducible random streams."""

    def __init__(self, rows: Sequence[RowSampling], device: torch.device | str):
        self.device = torch.device(device)
        self.rows: list[RowSampling] = []
        self.seed = torch.zeros(0, dtype=torch.long, device=self.device)
        self.stream = torch.zeros(0, dtype=torch.long, device=self.device)
        self.counter = torch.zeros(0, dtype=torch.long, device=self.device)
        self.grammars: GrammarRows | None = None  # built when the first constrained row arrives
        self.extend(rows)

    # ------------------------------------------------------------------ rows
    def extend(self, rows: Sequence[RowSampling]) -> None:
        """Append rows (new requests, or rows resumed from `state`)."""
        rows = list(rows)
        self.rows.extend(rows)
        self.seed = torch.cat([self.seed, self._longs([_signed(r.seed) for r in rows])])
        self.stream = torch.cat([self.stream, self._longs([_signed(r.stream) for r in rows])])
        self.counter = torch.cat([self.counter, self._longs([r.counter for r in rows])])
        if self.grammars is not None:
            self.grammars.extend([r.grammar for r in rows])
        elif any(r.grammar is not None for r in rows):
            first = next(r.grammar for r in rows if r.grammar is not None)
            before = [None] * (len(self.rows) - len(rows))
            vocab = first.compiled.tokenizer_info.vocab_size
            self.grammars = GrammarRows([*before, *(r.grammar for r in rows)], vocab, self.device)
        self._refresh()

    def state(self) -> list[RowSampling]:
        """Every row's settings with its current stream and draw counter (and grammar state):
        `extend`ing a fresh sampler with these continues each row exactly (e.g. after an eviction)."""
        streams, counters = self.stream.tolist(), self.counter.tolist()
        rows = [replace(r, stream=s, counter=c) for r, s, c in zip(self.rows, streams, counters, strict=True)]
        if self.grammars is not None:
            grammars = self.grammars.state([r.grammar for r in rows])
            rows = [replace(r, grammar=g) for r, g in zip(rows, grammars, strict=True)]
        return rows

    # ------------------------------------------------------------------ constraint hooks
    @property
    def constrained(self) -> bool:
        return self.grammars is not None and self.grammars.any

    def observe(self, tokens: torch.Tensor, live: torch.Tensor) -> None:
        """After a step: each live constrained row's grammar accepts its token (sampled or replayed)."""
        if self.grammars is not None:
            self.grammars.observe(tokens, live)

    def rollback(self, rows: Sequence[int], counts: Sequence[int]) -> None:
        """A rejected segment: row rows[k]'s grammar takes back its last counts[k] tokens."""
        if self.grammars is not None:
            self.grammars.rollback(rows, counts)

    def complete(self) -> list[bool]:
        """Per row: whether its constrained output is a complete match (True when unconstrained)."""
        return [True] * len(self.rows) if self.grammars is None else self.grammars.complete()

    def select(self, indices: Sequence[int] | torch.Tensor) -> None:
        """Follow the batch when it copies, drops or reorders rows: row r := old row indices[r].

        A row keeps its source's seed and draw counter. The first copy of a source keeps its
        stream; each further copy gets a new stream derived from (stream, copy number)."""
        source = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        copies: dict[int, int] = {}
        extra = []
        for i in source:
            extra.append(copies.get(i, 0))
            copies[i] = extra[-1] + 1
        index = self._longs(source)
        self.rows = [self.rows[i] for i in source]
        self.seed = self.seed.index_select(0, index)
        self.counter = self.counter.index_select(0, index)
        stream = self.stream.index_select(0, index)
        if any(extra):
            number = self._longs(extra)
            stream = torch.where(number > 0, splitmix64(stream ^ splitmix64(number)), stream)
        self.stream = stream
        if self.grammars is not None:
            self.grammars.select(source)
        self._refresh()

    def _subset(self, rows: list[int]) -> torch.Tensor | slice | None:
        """Rows of one sampling path: None when empty, a full slice when it is every row."""
        if not rows:
            return None
        return slice(None) if len(rows) == len(self.rows) else self._longs(rows)

    @staticmethod
    def _take(values: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        return values if isinstance(rows, slice) else values.index_select(0, rows)

    @staticmethod
    def _put(tokens: torch.Tensor, rows: torch.Tensor | slice, picked: torch.Tensor) -> torch.Tensor:
        return picked if isinstance(rows, slice) else tokens.index_copy(0, rows, picked)

    def _longs(self, values: Sequence[int]) -> torch.Tensor:
        return torch.tensor(list(values), dtype=torch.long, device=self.device)

    def _refresh(self) -> None:
        """Settings are known on the host, so every branch below is decided here, not per step."""
        rows = self.rows
        self.key = stream_key(self.seed, self.stream)
        self.temperature = torch.tensor(
            [r.temperature if r.temperature > 0 else 1.0 for r in rows], dtype=torch.float32, device=self.device
        )
        self.greedy = torch.tensor([r.temperature <= 0 for r in rows], dtype=torch.bool, device=self.device)
        self.all_greedy = all(r.temperature <= 0 for r in rows)
        sampled = [i for i, r in enumerate(rows) if r.temperature > 0]
        self.any_greedy = len(sampled) < len(rows)
        self.any_temperature = any(r.temperature not in (0.0, 1.0) for r in rows)
        # Rows that truncate with a top-k list (top-p applied inside it), rows with top-p but no
        # top-k (a nucleus of any size), and rows that sample from the full distribution.
        # Greedy rows are in none of them: their token is the argmax.
        k_rows = [i for i in sampled if rows[i].top_k > 0]
        p_rows = [i for i in sampled if rows[i].top_k <= 0 and rows[i].top_p < 1]
        full_rows = [i for i in sampled if rows[i].top_k <= 0 and rows[i].top_p >= 1]
        self.k_max = max((rows[i].top_k for i in k_rows), default=0)
        self.k_rows, self.p_rows, self.full_rows = (self._subset(k_rows), self._subset(p_rows), self._subset(full_rows))
        self._top_k = self._longs([rows[i].top_k for i in k_rows])
        self._top_p_k = torch.tensor([rows[i].top_p for i in k_rows], dtype=torch.float32, device=self.device)
        self._top_p_p = torch.tensor([rows[i].top_p for i in p_rows], dtype=torch.float32, device=self.device)
        self._any_top_p_k = any(rows[i].top_p < 1 for i in k_rows)

    # ------------------------------------------------------------------ sampling
    def __call__(
        self, logits: torch.Tensor, draws: torch.Tensor | None = None, *, mask_in_place: bool = False
    ) -> torch.Tensor:
        """One token per row. `draws` (bool[R]) marks the rows whose token will be used: only their
        counters advance, so a row's stream never depends on steps it sat out. None means all.
        Constrained rows sample from their grammar's allowed tokens only; `mask_in_place` lets
        their mask be written into `logits` (the caller does not need them unmasked). In place,
        only rows that draw are masked: the others' tokens are not used, and their logits stay
        as the model gave them (a row idling in a shared batch keeps unmasked logits)."""
        if self.grammars is not None and self.grammars.any:
            if mask_in_place and draws is not None:
                drawing = draws.tolist()
                masked = [i for i in self.grammars.constrained if drawing[i]]
                if masked:
                    logits = self.grammars.apply(logits, self.grammars.fill(), masked, in_place=True)
            else:
                logits = self.grammars.mask(logits, in_place=mask_in_place)
        if self.all_greedy:
            return logits.argmax(dim=-1)
        scaled = logits.float()
        if self.any_temperature:
            scaled = scaled / self.temperature[:, None]
        u = uniform(self.key, self.counter)
        self.counter = self.counter + (1 if draws is None else draws.to(torch.long))
        tokens = torch.zeros(scaled.shape[0], dtype=torch.long, device=scaled.device)
        if self.full_rows is not None:  # inverse CDF over the unsorted vocabulary
            probs = torch.softmax(self._take(scaled, self.full_rows), dim=-1)
            tokens = self._put(tokens, self.full_rows, _inverse_cdf(probs, self._take(u, self.full_rows)))
        if self.k_rows is not None:  # a partial top-k: the k largest, sorted
            values, indices = self._take(scaled, self.k_rows).topk(min(self.k_max, scaled.shape[-1]), dim=-1)
            picked = _sample_top_k(
                values, indices, self._take(u, self.k_rows), self._top_k, self._top_p_k, self._any_top_p_k
            )
            tokens = self._put(tokens, self.k_rows, picked)
        if self.p_rows is not None:  # top-p without top-k: select the nucleus without sorting
            probs = torch.softmax(self._take(scaled, self.p_rows), dim=-1)
            keep = _nucleus_sorted if probs.shape[-1] <= _SMALL_VOCAB else _nucleus
            probs = torch.where(keep(probs, self._top_p_p), probs, 0.0)
            picked = _inverse_cdf(probs, self._take(u, self.p_rows))
            # Float rounding could land on a dropped token: take the most likely one instead.
            picked = torch.where(probs.gather(1, picked[:, None]).squeeze(1) > 0, picked, probs.argmax(dim=-1))
            tokens = self._put(tokens, self.p_rows, picked)
        if self.any_greedy:
            tokens = torch.where(self.greedy, logits.argmax(dim=-1), tokens)
        return tokens


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index i with cumulative[i - 1] <= u * total < cumulative[i]: token i with probability p_i.
    As u < 1 - 2**-23, the target stays below the total, so a zero-probability token is never hit."""
    cumulative = probs.cumsum(dim=-1)
    target = (u * cumulative[:, -1])[:, None]
    return torch.searchsorted(cumulative, target, right=True).clamp(max=probs.shape[-1] - 1).squeeze(1)


_FIXED = float(1 << 40)  # probabilities as int64 multiples of 2**-40: exact, order-independent sums


_SMALL_VOCAB = 4096  # below this a sort is cheap, and smaller than the radix histograms
# Radix levels over the 31 value bits of a non-negative float32: (shift, bits) from the top.
_LEVELS = ((18, 13), (9, 9), (0, 9))


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Which tokens top-p keeps, without sorting: every token whose strictly more likely tokens
    hold at most `top_p` of the mass (so the most likely token always stays).

    Radix selection on the bits of the probabilities (non-negative float32 bit patterns order like
    their values): per level, a histogram of the mass by the next few bits among the tokens that
    share the bits found so far (tokens below and above that range land in two extra end bins)
    finds the bin where the cut falls. Three passes over the vocabulary, small histograms. Masses
    are summed as int64 fixed point, so the result does not depend on summation order (GPU
    atomics included)."""
    rows = probs.shape[0]
    bits = probs.view(torch.int32).to(torch.long)
    mass = (probs * _FIXED).to(torch.long)
    limit = (top_p.to(torch.float64) * _FIXED).to(torch.long)[:, None]
    prefix = torch.zeros((rows, 1), dtype=torch.long, device=probs.device)  # the cut's bits found so far
    for shift, width in _LEVELS:
        # bin 0: below the range, bins 1..2**width: the next `width` bits, last bin: above the range
        index = ((bits >> shift) - (prefix << width)).clamp_(-1, 1 << width).add_(1)
        per_bin = torch.zeros((rows, (1 << width) + 2), dtype=torch.long, device=probs.device)
        per_bin.scatter_add_(1, index, mass)
        above = _mass_above(per_bin)
        cut = ((above <= limit) & (per_bin > 0)).to(torch.uint8).argmax(dim=-1, keepdim=True)  # first such bin
        prefix = (prefix << width) | (cut - 1)
    return bits >= prefix


def _nucleus_sorted(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`_nucleus` by sorting (for small vocabularies)."""
    values, order = probs.sort(dim=-1, descending=True)
    before = values.cumsum(-1) - values
    return torch.zeros_like(probs, dtype=torch.bool).scatter_(1, order, before <= top_p[:, None])


def _mass_above(per_bin: torch.Tensor) -> torch.Tensor:
    """Mass in bins strictly above each bin."""
    return per_bin.flip(-1).cumsum(-1).flip(-1) - per_bin


def _sample_top_k(
    values: torch.Tensor,
    indices: torch.Tensor,
    u: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    any_top_p: bool,
) -> torch.Tensor:
    """Sample from the k largest logits (sorted, largest first), keeping each row's first `top_k`
    and, within those, the nucleus: every token whose higher-ranked mass is at most `top_p`."""
    width = values.shape[-1]
    kept = top_k.clamp(max=width)
    columns = torch.arange(width, device=values.device)[None, :]
    probs = torch.softmax(values.masked_fill(columns >= kept[:, None], float("-inf")), dim=-1)
    if any_top_p:
        before = probs.cumsum(-1) - probs
        kept = torch.minimum(kept, (before <= top_p[:, None]).sum(-1).clamp(min=1))
        probs = probs.masked_fill(columns >= kept[:, None], 0.0)
    choice = torch.minimum(_inverse_cdf(probs, u), kept - 1)
    return indices.gather(1, choice[:, None]).squeeze(1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Next-token entropy in nats, per row."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)
