"""The adaptive acceptance rule STARS shares with CARDS, as pure functions.

    r0     = (1 - alpha) * R(prompt, "") + alpha * r_target
    tau(t) = min(r_target, r0 + t * (r_target - r0) / max_new_tokens)
    soft:    accept with probability min(1, exp((r - tau(t)) / beta))
    hard:    accept when r >= tau(t)

A reward that is NaN or infinite is never accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal


def initial_threshold(empty_reward: float, target_reward: float, alpha: float) -> float:
    """r0: where the threshold starts, between the empty response's reward and the target."""
    return (1.0 - alpha) * empty_reward + alpha * target_reward


def threshold_at(accepted_tokens: int, r0: float, target_reward: float, max_new_tokens: int) -> float:
    """tau(t): rises linearly from r0 to the target over the token budget, never above the target."""
    return min(target_reward, r0 + accepted_tokens * (target_reward - r0) / max_new_tokens)


def acceptance_probability(reward: float, threshold: float, beta: float) -> float:
    """min(1, exp((r - tau) / beta)); 0 for a reward that is not a finite number."""
    if not math.isfinite(reward):
        return 0.0
    z = (reward - threshold) / beta
    return 1.0 if z >= 0 else math.exp(z)


def accepts(
    reward: float,
    threshold: float,
    *,
    mode: Literal["soft", "hard"],
    beta: float,
    uniform: float,
) -> bool:
    """Decide one candidate. `uniform` is a draw from U[0, 1), used by soft mode only."""
    if not math.isfinite(reward):
        return False
    if mode == "hard":
        return reward >= threshold
    return uniform < acceptance_probability(reward, threshold, beta)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` (any order, not empty), interpolated linearly between the two
    nearest ranks (numpy's default "linear" method)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("the quantile of no values is undefined")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def calibrated_target(first_round_rewards: Sequence[float], q: float) -> float | None:
    """A target reward taken as the q-quantile of one request's first-round rewards (finite ones
    only); None when none is finite."""
    finite = [r for r in first_round_rewards if math.isfinite(r)]
    return quantile(finite, q) if finite else None
