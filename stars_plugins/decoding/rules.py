"""Segment rules: how long a round runs for a request, and whether a logits rule ends it early.

A rule is a small object with three methods, in the spirit of transformers' `StoppingCriteria`:
`budget(config)` (most tokens one segment may have), `boundary(config)` (a `BoundaryRule` that ends
a row's segment before a token, or None) and `key(config)` (what requests must share to advance in
one lockstep batch).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from stars_plugins.backends.protocol import BoundaryRule
from stars_plugins.backends.sampling import entropy
from stars_plugins.config import StarsConfig


class SegmentRule(Protocol):
    settings: frozenset[str]  # the config settings the rule reads (of config.STRATEGY_SETTINGS)

    def budget(self, config: StarsConfig) -> int: ...

    def boundary(self, config: StarsConfig) -> BoundaryRule | None: ...

    def key(self, config: StarsConfig) -> tuple[Any, ...]: ...


class FixedHorizon:
    """STARS: every segment is K = `config.horizon` tokens (fewer only at EOS or the budget's end)."""

    settings = frozenset({"horizon"})

    def budget(self, config: StarsConfig) -> int:
        return config.horizon

    def boundary(self, config: StarsConfig) -> BoundaryRule | None:
        return None

    def key(self, config: StarsConfig) -> tuple[Any, ...]:
        return ("horizon", config.horizon)


class EntropyBoundary:
    """CARDS: a segment ends before a token whose next-token entropy reaches `entropy_threshold`
    (after at least `min_segment_tokens`, at most `max_segment_tokens`). A round lasts until the
    batch's longest segment ends."""

    settings = frozenset({"entropy_threshold", "min_segment_tokens", "max_segment_tokens"})

    def budget(self, config: StarsConfig) -> int:
        return config.max_segment_tokens

    def boundary(self, config: StarsConfig) -> BoundaryRule | None:
        return entropy_boundary(config.entropy_threshold, config.min_segment_tokens)

    def key(self, config: StarsConfig) -> tuple[Any, ...]:
        return ("entropy", config.entropy_threshold, config.min_segment_tokens, config.max_segment_tokens)


class WholeResponse:
    """One segment is the whole response: a round runs to EOS or `max_new_tokens`."""

    settings: frozenset[str] = frozenset()

    def budget(self, config: StarsConfig) -> int:
        return config.max_new_tokens

    def boundary(self, config: StarsConfig) -> BoundaryRule | None:
        return None

    def key(self, config: StarsConfig) -> tuple[Any, ...]:
        return ("whole",)


def entropy_boundary(threshold: float, shortest: int) -> BoundaryRule:
    """Rows whose segment has `shortest` tokens or more and whose next-token entropy (nats)
    reaches `threshold` end their segment here."""

    def ends(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths >= shortest) & (entropy(logits) >= threshold)

    return ends


__all__ = ["EntropyBoundary", "FixedHorizon", "SegmentRule", "WholeResponse", "entropy_boundary"]
