"""The segment loop shared by STARS, CARDS-style segmentation and plain sampling.

One round: every active row extends its request's accepted prefix by one candidate segment (fixed K
tokens for STARS, entropy-delimited for CARDS), all rows in one loop of forward passes; then one
batched reward call scores every candidate; then each request takes the first accepted candidate in
index order (which reproduces sequential resampling exactly), or rejects them all and resamples from
the same prefix next round, or, after `max_rejections`, takes the best candidate it has seen.

A `SegmentedGroup` is one such batch, advanced a round at a time (`step`), which new requests can
join between rounds (`admit`): the scheduler's unit of continuous batching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stars_plugins.acceptance import accepts, calibrated_target, initial_threshold, threshold_at
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.backend import BoundaryRule, PolicyBackend, PolicyBatch
from stars_plugins.decoding.sampling import entropy
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent, sampling_rows
from stars_plugins.errors import RewardError
from stars_plugins.rewards.base import RewardModel, score_checked


@dataclass
class DecodeContext:
    policy: PolicyBackend
    reward: RewardModel


@dataclass
class _Decision:
    candidate: Candidate | None = None  # None: every candidate was rejected
    threshold: float | None = None
    forced: bool = False


class SegmentedDecoder:
    """A strategy made of a segment rule (how a round ends) and a judge (reward threshold or none)."""

    def __init__(
        self,
        name: str,
        *,
        judged: bool,
        segment_budget: Callable[[StarsConfig], int],
        boundary: Callable[[StarsConfig], BoundaryRule | None] = lambda config: None,
        candidates: Callable[[StarsConfig], int] = lambda config: config.num_candidates,
        score_final: bool = True,
    ):
        self.name = name
        self.judged = judged
        self.score_final = score_final
        self.segment_budget = segment_budget
        self.boundary = boundary
        self.candidates = candidates

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]:
        return [RequestState.create(p, config, self.name, rows=self.candidates(config)) for p in prepared]

    def group_key(self, config: StarsConfig) -> tuple[Any, ...]:
        """Requests with equal keys (and the same reward model) can share one lockstep batch."""
        if self.boundary(config) is not None:
            return (self.name, config.entropy_threshold, config.min_segment_tokens, config.max_segment_tokens)
        return (self.name, self.segment_budget(config))

    def open_group(self, ctx: DecodeContext) -> SegmentedGroup:
        return SegmentedGroup(self, ctx)

    def run(self, ctx: DecodeContext, requests: list[RequestState]) -> Iterator[Event]:
        """Run `requests` to completion in one batch of their own."""
        return run_group(self.open_group(ctx), requests)


def run_group(group: Any, requests: list[RequestState]) -> Iterator[Event]:
    """Admit `requests` into a fresh group and step it until they have all finished."""
    try:
        yield from group.admit(requests)
        while not group.empty:
            yield from group.step()
    finally:
        group.close()


class SegmentedGroup:
    """One lockstep batch of requests that share a segment rule and a reward model."""

    def __init__(self, decoder: SegmentedDecoder, ctx: DecodeContext):
        self.decoder = decoder
        self.ctx = ctx
        self.batch: PolicyBatch | None = None
        self.boundary: BoundaryRule | None = None
        self.owners: list[RequestState] = []  # the request of every batch row
        self.active: list[RequestState] = []

    @property
    def empty(self) -> bool:
        return not self.active

    @property
    def rows(self) -> int:
        return len(self.owners)

    @property
    def requests(self) -> list[RequestState]:
        return list(self.active)

    def accepts_newcomers(self) -> bool:
        """Whether requests can join between rounds (needs a cache whose rows can be concatenated)."""
        return self.batch is None or self.batch.mergeable()

    # ------------------------------------------------------------------ membership
    def admit(self, requests: Sequence[RequestState]) -> list[Event]:
        """Prefill `requests` and add their rows to the batch; they take part from the next round.

        Requests that already generated (after an eviction) are re-prefilled with their accepted
        tokens and keep their thresholds, random streams and stats.
        """
        new = [r for r in requests if not r.done]
        if self.decoder.judged:
            starting = [r for r in new if r.empty_reward is None]
            if starting:
                _start_thresholds(self.ctx, starting)
        events: list[Event] = [FinishEvent(r, r.result()) for r in requests if r.done]
        new = [r for r in new if not r.done]
        if not new:
            return events
        fresh = self.ctx.policy.open_batch(
            [r.prepared.token_ids + tuple(r.generated) for r in new], [r.rows for r in new], sampling_rows(new)
        )
        if self.batch is None:
            self.batch = fresh
            self.boundary = self.decoder.boundary(new[0].config)
        else:
            self.batch.merge(fresh)
        self.owners.extend(r for r in new for _ in range(r.rows))
        self.active.extend(new)
        return events

    def evict(self) -> list[RequestState]:
        """Empty the group, keeping every request's accepted state (to re-admit it elsewhere)."""
        requests = [r for r in self.active if not r.done]
        self.close()
        self.owners, self.active = [], []
        return requests

    def fail_all(self, error: BaseException) -> list[Event]:
        events: list[Event] = []
        for r in self.active:
            r.finish("error", error)
            events.append(FinishEvent(r, r.result()))
        self.close()
        self.owners, self.active = [], []
        return events

    def close(self) -> None:
        if self.batch is not None:
            self.batch.free()
        self.batch = None

    # ------------------------------------------------------------------ one round
    def step(self) -> list[Event]:
        """Advance every active request by one round; return the events it produced."""
        events: list[Event] = []
        for r in self.active:
            if r.cancelled:
                r.finish("cancelled")
        if any(not r.done for r in self.active):
            events.extend(self._round())
        finished = [r for r in self.active if r.done]
        if finished:
            self._drop_finished()
            self.active = [r for r in self.active if not r.done]
            events.extend(FinishEvent(r, r.result()) for r in finished)
        if self.batch is not None and self.active:
            self.batch.compact()
        if not self.active:
            self.close()
        return events

    def _drop_finished(self) -> None:
        keep = [row for row, r in enumerate(self.owners) if not r.done]
        if len(keep) == len(self.owners):
            return
        if keep and self.batch is not None:
            self.batch.select_rows(keep)
        self.owners = [self.owners[row] for row in keep]

    def _round(self) -> list[Event]:
        assert self.batch is not None
        decoder, ctx, batch = self.decoder, self.ctx, self.batch
        active = [r for r in self.active if not r.done]
        budgets, forced = [], {}
        for row, r in enumerate(self.owners):
            if r.done:
                budgets.append(0)
            elif r.replay is not None:
                forced[row] = r.replay.token_ids
                budgets.append(len(r.replay.token_ids))
            else:
                budgets.append(min(decoder.segment_budget(r.config), r.remaining))
        out = batch.run_round(budgets, self.boundary, forced)

        rows_of: dict[int, list[int]] = {}
        for row, r in enumerate(self.owners):
            rows_of.setdefault(id(r), []).append(row)
        candidates: dict[int, list[Candidate]] = {}
        for r in active:
            r.stats.rounds += 1
            if r.replay is not None:
                continue
            cands = []
            for row in rows_of[id(r)]:
                tokens = out.segment(row)
                cand = _candidate(ctx.policy, r, tokens, bool(out.hit_eos[row]))
                cand.row = row
                cands.append(cand)
                r.stats.sampled_tokens += len(tokens)
            candidates[id(r)] = cands

        if decoder.judged:
            _score_candidates(ctx, [(r, c) for r in active for c in candidates.get(id(r), [])])

        source = list(range(batch.num_rows))
        rollback: list[int] = []
        events: list[Event] = []
        for r in active:
            rows = rows_of[id(r)]
            if r.done:  # its reward call failed
                continue
            if r.replay is not None:
                decision = _Decision(r.replay, _threshold(r), forced=True)
            elif decoder.judged:
                decision = _decide(r, candidates[id(r)])
            else:
                decision = _Decision(candidates[id(r)][0])
            if r.done:
                continue
            chosen = decision.candidate
            if chosen is None:
                rollback.extend(rows)
            elif chosen.row < 0 and chosen.finish is None and r.replay is None:
                r.replay = chosen  # forced best from an earlier round: re-feed its tokens next round
                rollback.extend(rows)
            else:
                if chosen.row >= 0:
                    for row in rows:
                        source[row] = chosen.row
                segment = r.accept(chosen, threshold=decision.threshold, forced=decision.forced)
                events.append(SegmentEvent(r, segment))
            for c in candidates.get(id(r), []):
                c.row = -1  # its round is over; only its tokens can come back (replay)
        batch.rollback(rollback, out)
        if source != list(range(batch.num_rows)):
            batch.select_rows(source)

        if not decoder.judged and decoder.score_final:
            _score_final(ctx, [r for r in active if r.done and r.finish_reason != "error"])
        return events


# ====================================================================== candidates
def _candidate(policy: PolicyBackend, r: RequestState, tokens: list[int], hit_eos: bool) -> Candidate:
    ids = tokens[:-1] if hit_eos else tokens
    text = policy.decode(r.generated + ids)
    finish = "eos" if hit_eos else None
    if r.config.stop:
        longest = max(len(s) for s in r.config.stop)
        start = max(0, len(r.text) - longest + 1)
        hits = [p for p in (text.find(s, start) for s in r.config.stop) if p >= 0]
        if hits:
            cut = min(hits)
            text, finish = text[:cut], "stop"
            ids = _ids_covering(policy, r.generated, ids, cut)
    if finish is None and len(r.generated) + len(ids) >= r.config.max_new_tokens:
        finish = "length"
    return Candidate(ids, text, finish, sampled=len(tokens))


def _ids_covering(policy: PolicyBackend, prefix: list[int], ids: list[int], chars: int) -> list[int]:
    """The shortest head of `ids` whose text (after `prefix`) reaches `chars` characters."""
    for k in range(len(ids) + 1):
        if len(policy.decode(prefix + ids[:k])) >= chars:
            return ids[:k]
    return ids


# ====================================================================== reward & threshold
def _start_thresholds(ctx: DecodeContext, requests: list[RequestState]) -> None:
    """R(prompt, "") for every request, in one call: where each threshold starts."""
    scores = score_texts(ctx, requests, [r.prepared.reward_prompt for r in requests], [""] * len(requests))
    for r, score in zip(requests, scores, strict=True):
        if score is None:
            continue
        if not math.isfinite(score):
            r.stats.invalid_rewards += 1
        r.empty_reward = score
        target = r.config.target_reward
        if target is None:
            target = ctx.reward.default_target
        if target is not None:
            _set_target(r, target)


def _set_target(r: RequestState, target: float) -> None:
    r.target = target
    empty = r.empty_reward if r.empty_reward is not None and math.isfinite(r.empty_reward) else target
    r.r0 = initial_threshold(empty, target, r.config.alpha)


def _threshold(r: RequestState) -> float | None:
    if r.target is None or r.r0 is None:
        return None
    return threshold_at(len(r.generated), r.r0, r.target, r.config.max_new_tokens)


def _score_candidates(ctx: DecodeContext, items: list[tuple[RequestState, Candidate]]) -> None:
    scores = score_texts(ctx, [r for r, _ in items], [r.prepared.reward_prompt for r, _ in items],
                         [c.text for _, c in items])
    for (_, cand), score in zip(items, scores, strict=True):
        if score is not None:
            cand.reward = score
    uncalibrated = [(r, c) for r, c in items if r.target is None and not r.done]
    if uncalibrated:  # no target from the config or the reward model: calibrate on this round
        quantile = uncalibrated[0][0].config.calibration_quantile
        target = calibrated_target([c.reward for _, c in uncalibrated], quantile)
        for r, _ in uncalibrated:
            if target is None:
                r.finish("error", RewardError(
                    f"reward {ctx.reward.name!r} returned no finite score in the first round, so no "
                    "target reward could be calibrated; set target_reward or fix the reward model"))
            else:
                _set_target(r, target)


def score_texts(ctx: DecodeContext, owners: list[RequestState], prompts: list[str],
                responses: list[str]) -> list[float | None]:
    """One batched reward call. If it fails, score each request alone so that only the request
    whose texts break the reward model fails; `None` marks those."""
    if not responses:
        return []
    for r in {id(r): r for r in owners}.values():
        r.stats.reward_calls += 1
    try:
        return list(score_checked(ctx.reward, prompts, responses))
    except RewardError:
        pass
    scores: list[float | None] = [None] * len(responses)
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(owners):
        groups.setdefault(id(r), []).append(i)
    for positions in groups.values():
        r = owners[positions[0]]
        try:
            values = score_checked(ctx.reward, [prompts[i] for i in positions], [responses[i] for i in positions])
        except RewardError as exc:
            r.finish("error", exc)
            continue
        for i, value in zip(positions, values, strict=True):
            scores[i] = value
    return scores


def _decide(r: RequestState, cands: list[Candidate]) -> _Decision:
    c = r.config
    tau = _threshold(r)
    for cand in cands:
        if not math.isfinite(cand.reward):
            r.stats.invalid_rewards += 1
        uniform = r.rng.random() if c.acceptance == "soft" else 0.0
        if tau is not None and accepts(cand.reward, tau, mode=c.acceptance, beta=c.beta, uniform=uniform):
            return _Decision(cand, tau)
        r.stats.rejections += 1
        r.stats.rejected_tokens += cand.sampled
        r.segment_rejections += 1
        if math.isfinite(cand.reward) and (r.best is None or cand.reward > r.best.reward):
            r.best = cand
        if r.segment_rejections >= c.max_rejections:
            if r.best is None:
                r.finish("error", RewardError(
                    f"segment {len(r.segments)} saw {r.segment_rejections} candidates and the reward model "
                    "returned no finite score for any of them; nothing can be accepted"))
                return _Decision()
            r.stats.rejected_tokens -= r.best.sampled  # its tokens are kept after all
            return _Decision(r.best, tau, forced=True)
    return _Decision(None, tau)


def _score_final(ctx: DecodeContext, finished: list[RequestState]) -> None:
    """Unjudged strategies still report the final reward of each response (one call)."""
    scores = score_texts(ctx, finished, [r.prepared.reward_prompt for r in finished], [r.text for r in finished])
    for r, score in zip(finished, scores, strict=True):
        if score is not None and math.isfinite(score):
            r.reward = score
        elif score is not None:
            r.stats.invalid_rewards += 1


# ====================================================================== segment rules
def fixed_horizon(config: StarsConfig) -> int:
    return config.horizon


def entropy_boundary(config: StarsConfig) -> BoundaryRule:
    """CARDS: a segment ends before a token whose predictive entropy reaches the threshold."""
    threshold, shortest = config.entropy_threshold, config.min_segment_tokens

    def ends(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths >= shortest) & (entropy(logits) >= threshold)

    return ends


__all__ = [
    "DecodeContext",
    "SegmentedDecoder",
    "SegmentedGroup",
    "entropy_boundary",
    "fixed_horizon",
    "run_group",
    "score_texts",
]
