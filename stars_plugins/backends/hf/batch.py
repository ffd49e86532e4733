"""`LockstepBatch`: the in-process transformers `PolicyBatch`, rows of one KV cache that advance
together, one token column at a time.

Layout: prompts are left-padded and prefilled once with position ids
`cumsum(mask) - 1`. Every decode step appends one column to the cache for all rows; a row that has
nothing to say in this step (its segment ended, it hit EOS) writes a column with attention mask 0.
Each row's next position id is `mask.sum() - 1`, so masked columns ("holes") are invisible to the
model: they cost memory, never recomputation.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from stars_plugins.backends.protocol import BoundaryRule, RoundOutput
from stars_plugins.backends.sampling import BatchSampler, RowSampling

if TYPE_CHECKING:
    from stars_plugins.backends.hf.policy import HFPolicy


@dataclass
class _Restore:
    """What `rollback` needs: where the round started and the logits at that point."""

    start_column: int
    start_logits: torch.Tensor  # [R, V]


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
        self.cache = _returned_cache(out)
        self.mask = mask
        self.logits = out.logits[:, -1, :].float()
        expand = torch.repeat_interleave(
            torch.arange(len(prompts), device=self.device), torch.tensor(list(copies), device=self.device)
        )
        if len(expand) != len(prompts) or bool((expand != torch.arange(len(prompts), device=self.device)).any()):
            self._select_cache_rows(expand)

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

    def run_round(
        self,
        budgets: Sequence[int],
        boundary: BoundaryRule | None = None,
        forced: dict[int, Sequence[int]] | None = None,
    ) -> RoundOutput:
        """Every row generates up to `budgets[r]` tokens (ending early at EOS or where `boundary`
        says); rows in `forced` replay the given tokens instead of sampling."""
        rows = self.num_rows
        restore = _Restore(self.length, self.logits.clone())
        budget = torch.tensor(list(budgets), dtype=torch.long, device=self.device)
        forced = forced or {}
        steps = int(budget.max()) if rows else 0
        tokens = torch.full((rows, max(steps, 0)), self.policy.pad_token_id, dtype=torch.long, device=self.device)
        forced_tokens = tokens.clone()
        is_forced = torch.zeros(rows, dtype=torch.bool, device=self.device)
        for row, replay in forced.items():
            forced_tokens[row, : len(replay)] = torch.tensor(list(replay), dtype=torch.long)
            is_forced[row] = True
        lengths = torch.zeros(rows, dtype=torch.long, device=self.device)
        live = budget > 0
        hit_eos = torch.zeros(rows, dtype=torch.bool, device=self.device)
        taken = 0
        watch = _LiveWatch(self.device)
        for s in range(steps):
            if boundary is not None:
                live &= is_forced | ~boundary(self.logits, lengths)
            live &= lengths < budget
            if watch.all_done(live):
                break
            # A constrained row's logits are masked in place: the next step replaces a live row's
            # logits, and re-masking an idle row's in the same grammar state changes nothing.
            sampled = self.sampler(self.logits, live & ~is_forced, mask_in_place=True)
            chosen = torch.where(is_forced, forced_tokens[:, s], sampled)
            chosen = torch.where(live, chosen, self.policy.pad_token_id)
            tokens[:, s] = chosen
            self.sampler.observe(chosen, live)
            self.step(chosen, live)
            taken = s + 1
            lengths += live.long()
            eos_now = live & ~is_forced & torch.isin(chosen, self.eos)
            hit_eos |= eos_now
            live &= ~eos_now
        complete = self.sampler.complete() if self.sampler.constrained else None
        return RoundOutput(tokens[:, :taken].cpu(), lengths.cpu(), hit_eos.cpu(), restore, complete=complete)

    # ------------------------------------------------------------------ row bookkeeping
    def rollback(self, rows: Sequence[int], out: RoundOutput) -> None:
        """Forget the last round's segment in `rows`: mask its columns, restore the start logits."""
        if not rows:
            return
        restore: _Restore = out.restore
        index = torch.tensor(list(rows), device=self.device)
        self.mask[index, restore.start_column :] = 0
        self.logits[index] = restore.start_logits[index]
        self.sampler.rollback(list(rows), [int(out.lengths[r]) for r in rows])

    def select_rows(self, source: Sequence[int]) -> None:
        """Row r becomes a copy of row `source[r]` (copies siblings, drops rows, reorders)."""
        self._select_cache_rows(torch.as_tensor(list(source), dtype=torch.long, device=self.device))
        self.sampler.select(list(source))

    def _select_cache_rows(self, index: torch.Tensor) -> None:
        self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.logits = self.logits.index_select(0, index)

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
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

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
        if self.num_rows == 0:
            self.cache, self.mask, self.logits = other.cache, other.mask, other.logits
            return
        width = max(self.length, other.length)
        self._pad_left(width - self.length)
        other._pad_left(width - other.length)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
            mine.values = torch.cat([mine.values, theirs.values], dim=0)
        self.mask = torch.cat([self.mask, other.mask], dim=0)
        self.logits = torch.cat([self.logits, other.logits], dim=0)
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
        self.logits = torch.zeros((0, 0), device=self.device)
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
