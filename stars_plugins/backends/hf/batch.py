"""`LockstepBatch`: the in-process transformers `PolicyBatch`, rows of one KV cache that advance
together, one token column at a time.

Layout: prompts are left-padded and prefilled once with position ids
`cumsum(mask) - 1`. Every decode step appends one column to the cache for all rows; a row that has
nothing to say in this step (its segment ended, it hit EOS) writes a column with attention mask 0.
Each row's next position id is `mask.sum() - 1`, so masked columns ("holes") are invisible to the
model: they cost memory, never recomputation. The cache's full-attention layers are `GrowingLayer`s
(`kv_cache.py`): a step writes its column into spare capacity instead of copying the whole cache.

- Rejecting a segment masks its columns in that row and restores the logits saved at the segment's
  start; nothing before it is re-encoded.
- Every row samples with its own `RowSampling` (the batch owns the `BatchSampler`, so row
  selection and merging keep the two in step).
- Accepting one of N sibling candidates copies the winner's row over its siblings (`index_select`,
  as beam search reorders caches).
- Finished rows leave with `select_rows`; `compact` squeezes holes out when they grow, moving every
  row's live columns to the right (a left-padded layout again).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from stars_plugins.backends.hf.kv_cache import GrowingLayer, grow_in_place
from stars_plugins.backends.protocol import BoundaryRule, RoundOutput, SegmentDone
from stars_plugins.backends.sampling import BatchSampler, RowSampling

if TYPE_CHECKING:
    from stars_plugins.backends.hf.policy import HFPolicy


@dataclass
class _RowSegment:
    """One row's current segment (its own clock): what `advance` and `rollback` need."""

    budget: int
    forced: list[int] | None  # tokens to replay instead of sampling
    rule: BoundaryRule | None  # ends the segment before a token (CARDS), or None
    kept: int  # live cache columns before the segment began: rollback keeps these
    tokens: list[int] = field(default_factory=list)
    hit_eos: bool = False
    ended: bool = False
    reported: bool = False  # handed out by `advance` once


class LockstepBatch:
    def __init__(
        self, policy: HFPolicy, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ):
        """Prefill `prompts` once, then give prompt i `copies[i]` identical rows; row r samples
        with `sampling[r]`."""
        if len(sampling) != sum(copies):
            raise ValueError(f"{len(sampling)} sampling settings for {sum(copies)} rows; pass one per row")
        self.policy = policy
        self.model = policy.model
        self.device = policy.device
        self.eos = torch.tensor(policy.eos_token_ids or [-1], device=self.device)
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.logits = torch.zeros((0, 0), device=self.device)
        self.start_logits = torch.zeros((0, 0), device=self.device)
        self.segments: list[_RowSegment | None] = []
        self.live_row_steps = 0  # rows x steps that produced a token (idle rows write masked columns)
        self.sampler = BatchSampler(sampling, self.device)
        if prompts:
            self._prefill(prompts, copies)

    # ------------------------------------------------------------------ shape
    @property
    def num_rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    # ------------------------------------------------------------------ model calls
    @torch.no_grad()
    def _prefill(self, prompts: Sequence[Sequence[int]], copies: Sequence[int]) -> None:
        ids, mask = left_padded(prompts, self.policy.pad_token_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": True}
        if self.policy.supports_position_ids:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if self.policy.supports_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=ids, **kwargs)
        self.cache = grow_in_place(_returned_cache(out))
        self.mask = mask
        self.logits = out.logits[:, -1, :].float()
        self.start_logits = torch.zeros_like(self.logits)
        self.segments = [None] * len(prompts)
        expand = torch.repeat_interleave(
            torch.arange(len(prompts), device=self.device), torch.tensor(list(copies), device=self.device)
        )
        if len(expand) != len(prompts) or bool((expand != torch.arange(len(prompts), device=self.device)).any()):
            self._select_cache_rows(expand)
            self.segments = [None] * len(expand)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, live: torch.Tensor) -> None:
        """Feed one token per row; rows where `live` is False write a masked column."""
        self.mask = torch.cat([self.mask, live.to(self.mask.dtype)[:, None]], dim=1)
        kwargs: dict[str, Any] = {
            "attention_mask": self.mask,
            self.policy.cache_argument: self.cache,
            "use_cache": True,
        }
        if self.policy.supports_position_ids:
            kwargs["position_ids"] = (self.mask.sum(-1, keepdim=True) - 1).clamp(min=0)
        out = self.model(input_ids=tokens[:, None], **kwargs)
        self.cache = _returned_cache(out)
        # A masked row's output is noise: it keeps the logits of its last real token.
        self.logits = torch.where(live[:, None], out.logits[:, -1, :].float(), self.logits)

    # ------------------------------------------------------------------ per-row segments
    def begin(
        self,
        rows: Sequence[int],
        budgets: Sequence[int],
        forced: dict[int, Sequence[int]] | None = None,
        boundaries: dict[int, BoundaryRule] | None = None,
    ) -> None:
        """Start a segment on each of `rows`: up to `budgets[i]` tokens (ending early at EOS or where
        the row's boundary rule says); rows in `forced` replay those tokens instead of sampling.
        Other rows keep their own clocks (mid-segment, parked or idle)."""
        forced, boundaries = forced or {}, boundaries or {}
        if not rows:
            return
        kept = self.mask.sum(1).tolist()
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.start_logits[index] = self.logits[index]
        for row, budget in zip(rows, budgets, strict=True):
            replay = list(forced[row]) if row in forced else None
            budget = int(budget) if replay is None else min(int(budget), len(replay))
            rule = None if replay is not None else boundaries.get(row)
            self.segments[row] = _RowSegment(budget, replay, rule, int(kept[row]), ended=budget <= 0)

    @torch.no_grad()
    def advance(self, steps: int) -> list[SegmentDone]:
        """Decode up to `steps` tokens for every row in a segment (the other rows idle, writing
        masked columns, and draw no random numbers); return the rows whose segment ended."""
        decoding = [r for r, s in enumerate(self.segments) if s is not None and not s.ended]
        if decoding and steps > 0:
            self._decode(decoding, steps)
        done = []
        complete: list[bool] | None = None
        for row, segment in enumerate(self.segments):
            if segment is not None and segment.ended and not segment.reported:
                segment.reported = True
                if complete is None and self.sampler.constrained:
                    complete = self.sampler.complete()
                flag = None if complete is None else complete[row]
                done.append(SegmentDone(row, list(segment.tokens), segment.hit_eos, complete=flag))
        return done

    def _decode(self, decoding: list[int], steps: int) -> None:
        rows, device, segments = self.num_rows, self.device, self.segments
        budget = torch.tensor([s.budget if s else 0 for s in segments], dtype=torch.long, device=device)
        length = torch.tensor([len(s.tokens) if s else 0 for s in segments], dtype=torch.long, device=device)
        live = torch.zeros(rows, dtype=torch.bool, device=device)
        live[torch.tensor(decoding, dtype=torch.long, device=device)] = True
        width = max((len(s.forced) for s in segments if s is not None and s.forced is not None), default=0)
        is_forced = torch.tensor([s is not None and s.forced is not None for s in segments], device=device)
        forced_tokens = torch.full((rows, max(width, 1)), self.policy.pad_token_id, dtype=torch.long)
        for r, s in enumerate(segments):
            if s is not None and s.forced:
                forced_tokens[r, : len(s.forced)] = torch.tensor(s.forced, dtype=torch.long)
        forced_tokens = forced_tokens.to(device)
        rules: dict[int, tuple[BoundaryRule, list[int]]] = {}
        for r in decoding:
            rule = segments[r].rule
            if rule is not None:
                rules.setdefault(id(rule), (rule, []))[1].append(r)
        by_rule = [(rule, torch.tensor(rs, dtype=torch.long, device=device)) for rule, rs in rules.values()]
        hit_eos = torch.zeros(rows, dtype=torch.bool, device=device)
        chosen_columns, live_columns = [], []
        watch = _LiveWatch(device)
        for _ in range(steps):
            live = self._still_live(live, length, budget, by_rule)
            if watch.all_done(live):
                break
            position = length.clamp(max=forced_tokens.shape[1] - 1)[:, None]
            # Constrained rows that sample are masked in place (`step` replaces their logits next);
            # idle rows' logits stay as they are (a boundary rule reads them when they begin again).
            sampled = self.sampler(self.logits, live & ~is_forced, mask_in_place=True)
            chosen = torch.where(is_forced, forced_tokens.gather(1, position).squeeze(1), sampled)
            chosen = torch.where(live, chosen, self.policy.pad_token_id)
            self.sampler.observe(chosen, live)  # constrained rows' grammars accept their tokens
            self.step(chosen, live)
            chosen_columns.append(chosen)
            live_columns.append(live)
            length = length + live.long()
            eos_now = live & ~is_forced & torch.isin(chosen, self.eos)
            hit_eos |= eos_now
            live = live & ~eos_now
        live = self._still_live(live, length, budget, by_rule)  # a boundary right at the chunk's end
        if chosen_columns:
            chosen_host = torch.stack(chosen_columns, 1).cpu().tolist()
            live_host = torch.stack(live_columns, 1).cpu().tolist()
        else:
            chosen_host = live_host = [[] for _ in range(rows)]
        still, eos_host = live.cpu().tolist(), hit_eos.cpu().tolist()
        self.live_row_steps += sum(map(sum, live_host))
        for r in decoding:
            s = segments[r]
            s.tokens.extend(t for t, on in zip(chosen_host[r], live_host[r], strict=True) if on)
            s.hit_eos = s.hit_eos or eos_host[r]
            s.ended = not still[r]

    def _still_live(
        self,
        live: torch.Tensor,
        length: torch.Tensor,
        budget: torch.Tensor,
        by_rule: list[tuple[BoundaryRule, torch.Tensor]],
    ) -> torch.Tensor:
        """Rows that sample another token: live, under budget, and not ended by their boundary rule
        (which reads the logits before that token)."""
        live = live & (length < budget)
        for rule, index in by_rule:
            ends = rule(self.logits.index_select(0, index), length.index_select(0, index))
            live = live.index_copy(0, index, live.index_select(0, index) & ~ends.to(torch.bool))
        return live

    def run_round(
        self,
        budgets: Sequence[int],
        boundary: BoundaryRule | None = None,
        forced: dict[int, Sequence[int]] | None = None,
    ) -> RoundOutput:
        """Every row generates up to `budgets[r]` tokens (ending early at EOS or where `boundary`
        says); rows in `forced` replay the given tokens instead of sampling. One `begin` for every
        row with a budget, then `advance` until all their segments end."""
        forced = forced or {}
        rows = [r for r in range(self.num_rows) if budgets[r] > 0 or r in forced]
        self.begin(
            rows,
            [budgets[r] for r in rows],
            forced,
            None if boundary is None else {r: boundary for r in rows},
        )
        done = {d.row: d for d in self.advance(max((int(b) for b in budgets), default=0))}
        steps = max((len(d.tokens) for d in done.values()), default=0)
        tokens = torch.full((self.num_rows, steps), self.policy.pad_token_id, dtype=torch.long)
        lengths = torch.zeros(self.num_rows, dtype=torch.long)
        hit_eos = torch.zeros(self.num_rows, dtype=torch.bool)
        for row, d in done.items():
            if d.tokens:
                tokens[row, : len(d.tokens)] = torch.tensor(d.tokens, dtype=torch.long)
            lengths[row], hit_eos[row] = len(d.tokens), d.hit_eos
        complete = self.sampler.complete() if self.sampler.constrained else None
        return RoundOutput(tokens, lengths, hit_eos, complete=complete)

    # ------------------------------------------------------------------ row bookkeeping
    def rollback(self, rows: Sequence[int], out: RoundOutput | None = None) -> None:
        """Forget the current segment of `rows`: mask its columns (whatever compaction or merging
        moved since) and restore the logits saved when it began."""
        rows = [r for r in rows if self.segments[r] is not None]
        if not rows:
            return
        index = torch.tensor(list(rows), device=self.device)
        kept = torch.tensor([self.segments[r].kept for r in rows], dtype=torch.long, device=self.device)
        mask = self.mask.index_select(0, index)
        mask = mask * (mask.cumsum(1) <= kept[:, None]).to(mask.dtype)
        self.mask = self.mask.index_copy(0, index, mask)
        self.logits[index] = self.start_logits[index]
        # the grammar takes back the segment's tokens (before the segment is forgotten)
        self.sampler.rollback(rows, [len(self.segments[r].tokens) for r in rows])
        for r in rows:
            self.segments[r] = None

    def select_rows(self, source: Sequence[int]) -> None:
        """Row r becomes a copy of row `source[r]` (copies siblings, drops rows, reorders)."""
        self._select_cache_rows(torch.as_tensor(list(source), dtype=torch.long, device=self.device))
        self.sampler.select(list(source))
        self.segments = [copy.deepcopy(self.segments[int(i)]) for i in source]

    def _select_cache_rows(self, index: torch.Tensor) -> None:
        self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.logits = self.logits.index_select(0, index)
        self.start_logits = self.start_logits.index_select(0, index)

    def compact(self, min_holes: int = 32, min_fraction: float = 0.25) -> bool:
        """Drop masked columns when they make up enough of the cache. Returns whether it did."""
        live_counts = self.mask.sum(1)
        new_length = int(live_counts.max()) if self.num_rows else 0
        holes = self.length - new_length
        if holes < min_holes or holes < min_fraction * self.length or not self._compactable():
            return False
        # A stable sort puts each row's masked columns first and its live columns last, in order.
        order = torch.argsort(self.mask, dim=1, stable=True)[:, self.length - new_length :]
        self.mask = self.mask.gather(1, order)
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            gather = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
            layer.keys = layer.keys.gather(2, gather)
            gather = order[:, None, :, None].expand(-1, layer.values.shape[1], -1, layer.values.shape[-1])
            layer.values = layer.values.gather(2, gather)
        return True

    def _compactable(self) -> bool:
        """Column surgery (compaction, merging) is done for plain full-attention caches only."""
        from transformers.cache_utils import DynamicLayer

        layers = getattr(self.cache, "layers", None)
        return bool(layers) and all(type(layer) in (DynamicLayer, GrowingLayer) for layer in layers)

    def mergeable(self) -> bool:
        return self.cache is None or self._compactable()

    def merge(self, other: LockstepBatch) -> None:
        """Append `other`'s rows (new requests, freshly prefilled) below this batch's rows.

        The shorter of the two is left-padded with masked columns first; position ids come from
        the mask, so the padding is invisible to the model.
        """
        if not (self.mergeable() and other.mergeable()):
            raise ValueError("this model's cache layout does not support merging batches")
        if other.num_rows == 0:
            return
        self.sampler.extend(other.sampler.state())
        self.segments = self.segments + other.segments
        if self.num_rows == 0:
            self.cache, self.mask, self.logits = other.cache, other.mask, other.logits
            self.start_logits = other.start_logits
            return
        width = max(self.length, other.length)
        self._pad_left(width - self.length)
        other._pad_left(width - other.length)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
            mine.values = torch.cat([mine.values, theirs.values], dim=0)
        self.mask = torch.cat([self.mask, other.mask], dim=0)
        self.logits = torch.cat([self.logits, other.logits], dim=0)
        self.start_logits = torch.cat([self.start_logits, other.start_logits], dim=0)
        other.free()

    def _pad_left(self, columns: int) -> None:
        if columns <= 0:
            return
        for layer in self.cache.layers:
            keys, values = layer.keys, layer.values
            layer.keys = torch.cat([keys.new_zeros((*keys.shape[:2], columns, keys.shape[-1])), keys], dim=2)
            layer.values = torch.cat([values.new_zeros((*values.shape[:2], columns, values.shape[-1])), values], dim=2)
        self.mask = torch.cat([self.mask.new_zeros((self.num_rows, columns)), self.mask], dim=1)

    def free(self) -> None:
        self.cache = None
        self.sampler = BatchSampler([], self.device)
        self.segments = []
        self.logits = torch.zeros((0, 0), device=self.device)
        self.start_logits = torch.zeros((0, 0), device=self.device)
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)


class _LiveWatch:
    """Tells the step loop when no row is live any more. On the CPU it just asks. On a GPU, asking
    would wait for the device every step; instead the flag is copied to the host without blocking
    and read one step later, so the host stays a step ahead of the device. The price: when every
    row ends early, one extra all-masked step runs (it writes masked columns, samples nothing)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.lagged = device.type == "cuda"
        self.pending: tuple[torch.Tensor, Any] | None = None

    def all_done(self, live: torch.Tensor) -> bool:
        if not self.lagged:
            return not bool(live.any())
        done = False
        if self.pending is not None:
            flag, event = self.pending
            event.synchronize()  # the previous step's flag: normally already there
            done = not bool(flag)
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(live.any(), non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))  # the stream the copy was queued on
        self.pending = (flag, event)
        return done


def left_padded(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids right-aligned in one [rows, longest] tensor, padded on the left, and their mask."""
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, longest - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[i, longest - len(prompt) :] = 1
    return ids, mask


def _returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
