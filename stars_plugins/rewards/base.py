"""The reward protocol: `score(prompts, responses) -> scores`, batched, higher is better.

A reward model may also implement `score_keyed(keys, prompts, responses)` and `release(keys)`: the
decoding loop then passes a stable key per request with every pair (the same key for every
candidate of one request) and releases the keys of requests that finished or left their batch.
That is the hook for per-request caches (a reward-model prefix cache, say).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from stars_plugins.errors import RewardError
from stars_plugins.results import GenerationStats


@runtime_checkable
class RewardModel(Protocol):
    """Anything with a name, an optional default target and a batched `score` is a reward model.

    `score` receives the user's prompt text (not the policy's chat-templated input) and the response
    so far, one pair per candidate, and returns one float per pair. Responses may be unfinished:
    STARS scores every segment.
    """

    name: str
    default_target: float | None

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> Sequence[float]: ...


class CallableReward:
    """Wraps a plain function `(prompts, responses) -> scores` as a `RewardModel`."""

    def __init__(
        self,
        fn: Callable[[Sequence[str], Sequence[str]], Any],
        *,
        name: str | None = None,
        default_target: float | None = None,
    ):
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        self.default_target = default_target if default_target is not None else getattr(fn, "default_target", None)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> Sequence[float]:
        return self.fn(list(prompts), list(responses))

    def __repr__(self) -> str:
        return f"CallableReward({self.name!r})"


def reward_identity(reward: RewardModel) -> Any:
    """What makes two reward references "the same model" for batching: the object itself, or for
    wrapped functions the function (bound methods of one object compare equal)."""
    if isinstance(reward, CallableReward):
        try:
            hash(reward.fn)
        except TypeError:
            return ("callable", id(reward.fn))
        return ("callable", reward.fn)
    return ("model", id(reward))


def to_floats(raw: Any, expected: int, name: str) -> list[float]:
    """Normalise a reward model's output (list, numpy array, tensor) into `expected` floats.

    NaN and infinities pass through: the acceptance rule rejects them and the stats count them.
    """
    if hasattr(raw, "detach"):
        raw = raw.detach().float().cpu().reshape(-1).tolist()
    elif hasattr(raw, "tolist"):
        raw = raw.tolist()
    try:
        scores = [float(x) for x in raw]
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward {name!r} must return numbers, got {raw!r:.200}") from exc
    if len(scores) != expected:
        raise RewardError(f"reward {name!r} returned {len(scores)} scores for {expected} responses")
    return scores


def score_checked(
    reward: RewardModel, prompts: Sequence[str], responses: Sequence[str], *, keys: Sequence[Hashable] | None = None
) -> list[float]:
    """Call `reward.score` (or `reward.score_keyed` when it has one and `keys` are given) and
    validate its output; failures become `RewardError`."""
    if len(prompts) != len(responses):
        raise RewardError(f"got {len(prompts)} prompts and {len(responses)} responses; pass one prompt per response")
    if not responses:
        return []
    try:
        keyed = getattr(reward, "score_keyed", None)
        if keys is not None and keyed is not None:
            raw = keyed(list(keys), list(prompts), list(responses))
        else:
            raw = reward.score(list(prompts), list(responses))
    except RewardError:
        raise
    except Exception as exc:
        raise RewardError(f"reward {reward.name!r} failed: {type(exc).__name__}: {exc}") from exc
    return to_floats(raw, len(responses), reward.name)


def release_keys(reward: RewardModel, keys: Sequence[Hashable]) -> None:
    """Call `reward.release(keys)` if the reward has it. A failing release only warns: it must not
    fail requests that have already finished."""
    release = getattr(reward, "release", None)
    if release is None or not keys:
        return
    try:
        release(list(keys))
    except Exception as exc:
        warnings.warn(f"reward {reward.name!r} failed to release request keys: {exc}", RuntimeWarning, stacklevel=2)


def add_reward_tokens(reward: Any, stats: Sequence[GenerationStats]) -> None:
    """After a successful reward call, add the reward-model tokens it ran for each pair to that
    pair's request stats (rewards that report `last_tokens`; others count nothing)."""
    counts = getattr(reward, "last_tokens", None)
    if counts is None or len(counts) != len(stats):
        return
    for s, n in zip(stats, counts, strict=True):
        s.reward_tokens += int(n)
