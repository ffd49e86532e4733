"""Causal-LM reward models (`*ForSequenceClassification` over a decoder) with a per-request prefix cache.

Every STARS round scores each candidate as `R(prompt, accepted response + segment)`. Read from
scratch, that is a prefill of the whole prompt and response per candidate per round: quadratic in
the response length. A decoder's hidden state at a position depends only on the tokens before it,
so the key/value cache of a prefix can be reused exactly.

Per request key, `CausalLMReward` keeps the KV cache of the token ids of one earlier candidate, in
the reward model's own tokenizer. Each round it renders and tokenizes the full text of every
candidate (chat-template suffix included), reuses the longest common prefix of token ids with the
cache, and runs only the rest, for all candidates of all requests in one batch. Comparing token
ids (not text) makes this exact whatever the policy's tokenizer is, and across merges at the
segment boundary: a token that changes is simply not part of the common prefix.

What is kept after a round: the KV of the request's *first* candidate. STARS takes the first
accepted candidate in index order, so candidate 0 is the single most likely to be extended next
round; when another one is accepted or all are rejected, the next candidates still share the
accepted prefix with it, and only that part is reused. With one candidate per request (the
default) the cache follows the accepted text exactly; the cost per round is the new segment plus
the template suffix, not the whole response.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stars_plugins.rewards.classifier import ClassifierReward


def supports_prefix_cache(model: Any) -> bool:
    """A sequence classifier over a decoder whose hidden states we can continue from a KV cache:
    a `score` head on a base model that takes a cache, full attention in every layer."""
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", None)
    if config is None or base is None or base is model or not hasattr(model, "score"):
        return False
    if getattr(config, "is_encoder_decoder", False):
        return False
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "use_sliding_window", False) and getattr(text_config, "sliding_window", None):
        return False
    if any(kind != "full_attention" for kind in getattr(text_config, "layer_types", None) or ()):
        return False
    return _cache_argument(base) is not None


def _cache_argument(module: Any) -> str | None:
    params = inspect.signature(module.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


@dataclass
class _Entry:
    """The reward model's KV cache of `ids` for one request, all layers in one tensor
    [2 * layers, heads, len(ids), head_dim] (keys of layer l at 2l, values at 2l + 1), so that
    assembling a batch's past is one copy per row, not one per row and layer."""

    ids: list[int]
    kv: torch.Tensor


@dataclass
class _Row:
    key: Hashable
    ids: list[int]
    position: int  # where the model reads the score (its own last-non-pad rule)
    reuse: int = 0  # cached tokens this row starts from
    keep: bool = False  # its KV becomes the key's cache (the key's first row in the call)


class CausalLMReward(ClassifierReward):
    """A `ClassifierReward` over a decoder that reuses each request's reward-model KV cache.

    `score` keeps the uncached path. `score_keyed(keys, prompts, responses)` uses the cache of each
    pair's key; `release(keys)` frees them. `last_tokens` holds, per pair of the last call, the
    reward-model tokens actually run (what `GenerationStats.reward_tokens` adds up).
    """

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        self.base = model.base_model
        self.cache_argument = _cache_argument(self.base) or "past_key_values"
        self.entries: dict[Hashable, _Entry] = {}
        self.last_tokens: list[int] = []
        self.pad_id = getattr(model.config, "pad_token_id", None)
        self._lock = threading.RLock()
        self._counted: list[int] = []  # tokens per pair while the uncached path encodes

    # ------------------------------------------------------------------ tokens
    def input_ids(self, prompt: str, response: str) -> list[int]:
        """The ids the uncached path feeds for this pair (no padding, no truncation)."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
            )
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(prompt, response)["input_ids"])

    def _read_position(self, ids: Sequence[int]) -> int:
        """The rightmost token that is not the pad id, as `*ForSequenceClassification` pools."""
        if self.pad_id is None:
            return len(ids) - 1
        for j in range(len(ids) - 1, -1, -1):
            if ids[j] != self.pad_id:
                return j
        return 0

    # ------------------------------------------------------------------ uncached
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        with self._lock:
            self._counted = []
            scores = super().score(prompts, responses)
            self.last_tokens = self._counted
            return scores

    def _encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = super()._encode(prompts, responses)
        self._counted.extend(batch["attention_mask"].sum(1).tolist())
        return batch

    # ------------------------------------------------------------------ cached
    def score_keyed(self, keys: Sequence[Hashable], prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        with self._lock:
            return self._score_keyed(keys, prompts, responses)

    def release(self, keys: Sequence[Hashable]) -> None:
        with self._lock:
            for key in keys:
                self.entries.pop(key, None)

    @torch.inference_mode()
    def _score_keyed(self, keys: Sequence[Hashable], prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        rows = []
        for key, prompt, response in zip(keys, prompts, responses, strict=True):
            ids = self.input_ids(prompt, response)
            rows.append(_Row(key, ids, self._read_position(ids)))
        if any(len(row.ids) > self.max_length or not row.ids for row in rows):
            # Truncated from the left, the text no longer extends a fixed prefix: score it as before.
            self._counted = []
            scores = ClassifierReward.score(self, prompts, responses)
            self.last_tokens = self._counted
            return scores
        by_key: dict[Hashable, list[_Row]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
        for key, group in by_key.items():
            group[0].keep = True
            entry = self.entries.get(key)
            # One reuse length per key, so that a key's rows share one past; every row must keep at
            # least its scored position to run.
            reuse = min(
                min(_common_prefix(entry.ids, r.ids) for r in group) if entry else 0, min(r.position for r in group)
            )
            for r in group:
                r.reuse = reuse
        scores: list[float] = [0.0] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: (id(rows[i].key), i))  # rows of a key together
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            values = self._run([rows[i] for i in chunk])
            for i, value in zip(chunk, values, strict=True):
                scores[i] = value
        self.last_tokens = [len(r.ids) - r.reuse for r in rows]
        return scores

    def _run(self, rows: list[_Row]) -> list[float]:
        """One forward pass over the uncached tails of `rows`, each on its key's cached prefix
        (left-padded to a common past length); then keep each key's first row as its new cache."""
        device = self.model.device
        past = max(r.reuse for r in rows)
        tails = [r.ids[r.reuse :] for r in rows]
        width = max(len(t) for t in tails)
        ids = torch.full((len(rows), width), self.pad_id if self.pad_id is not None else 0, dtype=torch.long)
        mask = torch.zeros((len(rows), past + width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, tail) in enumerate(zip(rows, tails, strict=True)):
            ids[i, : len(tail)] = torch.tensor(tail, dtype=torch.long)
            mask[i, past - row.reuse : past + len(tail)] = 1
            positions[i] = torch.arange(row.reuse, row.reuse + width)
        kwargs: dict[str, Any] = {
            "attention_mask": mask.to(device),
            "position_ids": positions.to(device),
            "use_cache": True,
        }
        if past:
            kwargs[self.cache_argument] = self._past(rows, past)
        out = self.base(input_ids=ids.to(device), **kwargs)
        read = torch.tensor([r.position - r.reuse for r in rows], device=device)
        hidden = out.last_hidden_state[torch.arange(len(rows), device=device), read]
        logits = self.model.score(hidden).float()
        if logits.shape[-1] == 1:
            values = logits[:, 0]
        else:
            values = torch.log_softmax(logits, dim=-1)[:, self.label_index]
        self._keep_first_rows(rows, past, _returned_cache(out))
        return values.cpu().tolist()

    def _past(self, rows: list[_Row], past: int) -> Any:
        """The cached prefixes of `rows`, left-padded with (masked) zeros to `past` columns."""
        from transformers.cache_utils import DynamicCache

        template = next(self.entries[r.key].kv for r in rows if r.reuse)
        stacked = template.new_zeros((template.shape[0], len(rows), template.shape[1], past, template.shape[3]))
        for i, row in enumerate(rows):
            if row.reuse:
                stacked[:, i, :, past - row.reuse :] = self.entries[row.key].kv[:, :, : row.reuse]
        layers = [(stacked[index], stacked[index + 1]) for index in range(0, stacked.shape[0], 2)]
        return DynamicCache(ddp_cache_data=layers)

    def _keep_first_rows(self, rows: list[_Row], past: int, cache: Any) -> None:
        keep = [i for i, row in enumerate(rows) if row.keep]
        if not keep:
            return
        index = torch.tensor(keep, device=cache.layers[0].keys.device)
        kept = torch.stack([t.index_select(0, index) for layer in cache.layers for t in (layer.keys, layer.values)])
        for j, i in enumerate(keep):
            row = rows[i]
            start = past - row.reuse
            end = past + len(row.ids) - row.reuse
            self.entries[row.key] = _Entry(list(row.ids), kept[:, j, :, start:end].clone())

    def __repr__(self) -> str:
        return f"CausalLMReward({self.name!r}, cached requests={len(self.entries)})"


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix (bisection on slice equality: list compares run in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
