"""Reward calls of the decoding loop: one batched call per round, isolated per request on failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stars_plugins.backends.protocol import PolicyBackend
from stars_plugins.decoding.state import RequestState
from stars_plugins.errors import RewardError
from stars_plugins.rewards.base import RewardModel, add_reward_tokens, release_keys, score_checked


@dataclass
class DecodeContext:
    """What a group decodes with: the policy backend and the reward model."""

    policy: PolicyBackend
    reward: RewardModel


def score_texts(ctx: DecodeContext, owners: Sequence[RequestState], responses: Sequence[str]) -> list[float | None]:
    """Score `responses[i]` as a response to `owners[i]`'s prompt, in one batched reward call.

    If that call fails, each request is scored alone, so that only the request whose texts break
    the reward model fails (it finishes with the error); `None` marks its scores.
    """
    if not responses:
        return []
    prompts = [r.prepared.reward_prompt for r in owners]
    # a required call's forced opening is part of the answer the reward judges (docs/tools.md)
    responses = [r.prepared.response_prefix + text for r, text in zip(owners, responses, strict=True)]
    keys = [r.key for r in owners]
    for r in {id(r): r for r in owners}.values():
        r.stats.reward_calls += 1
    try:
        scores = list(score_checked(ctx.reward, prompts, responses, keys=keys))
        add_reward_tokens(ctx.reward, [r.stats for r in owners])
        return scores
    except RewardError:
        pass
    scores: list[float | None] = [None] * len(responses)
    positions_of: dict[int, list[int]] = {}
    for i, r in enumerate(owners):
        positions_of.setdefault(id(r), []).append(i)
    for positions in positions_of.values():
        r = owners[positions[0]]
        try:
            values = score_checked(
                ctx.reward,
                [prompts[i] for i in positions],
                [responses[i] for i in positions],
                keys=[keys[i] for i in positions],
            )
        except RewardError as exc:
            r.finish("error", exc)
            continue
        add_reward_tokens(ctx.reward, [r.stats] * len(positions))
        for i, value in zip(positions, values, strict=True):
            scores[i] = value
    return scores


def release(ctx: DecodeContext, requests: Sequence[RequestState]) -> None:
    """Tell the reward model these requests are gone (it may drop per-request caches)."""
    release_keys(ctx.reward, [r.key for r in requests])


__all__ = ["DecodeContext", "release", "score_texts"]
