"""Token sampling for a batch whose rows may each have their own settings and random stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowSampling:
    """Sampling settings of one batch row. temperature 0 means greedy."""

    temperature: float
    top_k: int
    top_p: float
    generator: torch.Generator | None = None


class BatchSampler:
    """Samples one token per row; rows keep independent random streams (one generator each), so a
    request draws the same tokens whatever else shares its batch."""

    def __init__(self, rows: Sequence[RowSampling], device: torch.device):
        self.rows = list(rows)
        self.device = device
        self._refresh()

    def _refresh(self) -> None:
        rows = self.rows
        self.temperature = torch.tensor([r.temperature for r in rows], device=self.device, dtype=torch.float32)
        self.top_k = torch.tensor([r.top_k for r in rows], device=self.device, dtype=torch.long)
        self.top_p = torch.tensor([r.top_p for r in rows], device=self.device, dtype=torch.float32)
        self.greedy = self.temperature == 0
        self.all_greedy = bool(self.greedy.all()) if rows else True
        self.any_top_p = bool((self.top_p < 1).any()) if rows else False
        self.k_all = bool((self.top_k == 0).any()) if rows else False
        self.k_max = int(self.top_k.max()) if rows else 0

    def select(self, indices: Sequence[int]) -> None:
        """Follow the batch when it reorders or drops rows."""
        self.rows = [self.rows[i] for i in indices]
        self._refresh()

    def extend(self, rows: Sequence[RowSampling]) -> None:
        self.rows.extend(rows)
        self._refresh()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        greedy_tokens = logits.argmax(dim=-1)
        if self.all_greedy:
            return greedy_tokens
        vocab = logits.shape[-1]
        k = vocab if self.k_all else min(self.k_max, vocab)
        scaled = logits / torch.where(self.greedy, 1.0, self.temperature)[:, None]
        values, indices = scaled.topk(k, dim=-1)  # sorted, most likely first
        row_k = torch.where(self.top_k > 0, self.top_k.clamp(max=k), k)
        values = values.masked_fill(torch.arange(k, device=logits.device)[None, :] >= row_k[:, None], float("-inf"))
        probs = torch.softmax(values, dim=-1)
        if self.any_top_p:
            before = probs.cumsum(-1) - probs  # mass strictly before each token; the first one always stays
            probs = probs.masked_fill(before > self.top_p[:, None], 0.0)
        cumulative = probs.cumsum(-1)
        draws = torch.stack([self._uniform(row) for row in self.rows]).to(logits.device)
        choice = torch.searchsorted(cumulative, (draws * cumulative[:, -1])[:, None]).clamp(max=k - 1)
        sampled = indices.gather(1, choice).squeeze(1)
        return torch.where(self.greedy, greedy_tokens, sampled)

    @staticmethod
    def _uniform(row: RowSampling) -> torch.Tensor:
        return torch.rand((), generator=row.generator)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Next-token entropy in nats, per row."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)
