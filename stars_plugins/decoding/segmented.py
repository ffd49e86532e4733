"""The segment loop shared by STARS, CARDS-style segmentation and plain sampling.

One round: every active row extends its request's accepted prefix by one candidate segment (fixed K
tokens for STARS, entropy-delimited for CARDS), all rows in one loop of forward passes; then one
batched reward call scores every candidate; then each request takes the first accepted candidate in
index order (which reproduces sequential resampling exactly), or rejects them all and resamples from
the same prefix next round, or, after `max_rejections`, takes the best candidate it has seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from stars_plugins.acceptance import accepts, calibrated_target, initial_threshold, threshold_at
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.batch import BoundaryRule, LockstepBatch, RoundOutput
from stars_plugins.decoding.sampling import BatchSampler, entropy
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent
from stars_plugins.errors import RewardError
from stars_plugins.policy.hf import HFPolicy
from stars_plugins.rewards.base import RewardModel, score_checked


@dataclass
class DecodeContext:
    policy: HFPolicy
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

    # ================================================================== the loop
    def run(self, ctx: DecodeContext, requests: list[RequestState]) -> Iterator[Event]:
        active = [r for r in requests if not r.done]
        if not active:
            return
        batch = LockstepBatch(ctx.policy, [r.prepared.token_ids for r in active], [r.rows for r in active])
        owners = [r for r in active for _ in range(r.rows)]
        sampler = BatchSampler([r.row_sampling() for r in owners], batch.device)
        boundary = self.boundary(active[0].config)
        try:
            if self.judged:
                self._start_thresholds(ctx, active)
            while True:
                for r in active:
                    if r.cancelled:
                        r.finish("cancelled")
                finished = [r for r in active if r.done]
                if finished:
                    owners = self._drop(batch, sampler, owners)
                    active = [r for r in active if not r.done]
                    for r in finished:
                        yield FinishEvent(r, r.result())
                if not active:
                    return
                yield from self._round(ctx, batch, sampler, boundary, owners, active)
                owners = self._drop(batch, sampler, owners)  # finished requests leave the batch now
                batch.compact()
        finally:
            batch.free()

    def _round(self, ctx: DecodeContext, batch: LockstepBatch, sampler: BatchSampler,
               boundary: BoundaryRule | None, owners: list[RequestState],
               active: list[RequestState]) -> Iterator[Event]:
        budgets, forced = [], {}
        for row, r in enumerate(owners):
            if r.replay is not None:
                forced[row] = r.replay.token_ids
                budgets.append(len(r.replay.token_ids))
            else:
                budgets.append(min(self.segment_budget(r.config), r.remaining))
        out = batch.run_round(budgets, sampler, boundary, forced)

        rows_of: dict[int, list[int]] = {}
        for row, r in enumerate(owners):
            rows_of.setdefault(id(r), []).append(row)
        candidates: dict[int, list[Candidate]] = {}
        for r in active:
            r.stats.rounds += 1
            if r.replay is not None:
                continue
            cands = []
            for row in rows_of[id(r)]:
                tokens = out.segment(row)
                cand = self._candidate(ctx.policy, r, tokens, bool(out.hit_eos[row]))
                cand.row = row
                cands.append(cand)
                r.stats.sampled_tokens += len(tokens)
            candidates[id(r)] = cands

        if self.judged:
            self._score(ctx, [(r, c) for r in active for c in candidates.get(id(r), [])])

        source = list(range(batch.num_rows))
        rollback: list[int] = []
        accepted: list[Event] = []
        for r in active:
            rows = rows_of[id(r)]
            if r.done:  # its reward call failed
                continue
            if r.replay is not None:
                decision = _Decision(r.replay, self._threshold(r), forced=True)
            elif self.judged:
                decision = self._decide(r, candidates[id(r)])
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
                accepted.append(SegmentEvent(r, segment))
            for c in candidates.get(id(r), []):
                c.row = -1  # its round is over; only its tokens can come back (replay)
        batch.rollback(rollback, out)
        if source != list(range(batch.num_rows)):
            batch.select_rows(source)
            sampler.select(source)

        if not self.judged and self.score_final:
            self._score_finished(ctx, [r for r in active if r.done and r.finish_reason != "error"])
        yield from accepted

    @staticmethod
    def _drop(batch: LockstepBatch, sampler: BatchSampler, owners: list[RequestState]) -> list[RequestState]:
        """Remove the rows of finished requests from the batch."""
        keep = [row for row, r in enumerate(owners) if not r.done]
        if len(keep) == len(owners):
            return owners
        if keep:
            batch.select_rows(keep)
            sampler.select(keep)
        return [owners[row] for row in keep]

    # ================================================================== candidates
    @staticmethod
    def _candidate(policy: HFPolicy, r: RequestState, tokens: list[int], hit_eos: bool) -> Candidate:
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

    # ================================================================== reward & threshold
    def _start_thresholds(self, ctx: DecodeContext, requests: list[RequestState]) -> None:
        """R(prompt, "") for every request, in one call: where each threshold starts."""
        scores = self._score_texts(ctx, requests, [r.prepared.reward_prompt for r in requests],
                                   [""] * len(requests))
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
                self._set_target(r, target)

    @staticmethod
    def _set_target(r: RequestState, target: float) -> None:
        r.target = target
        empty = r.empty_reward if r.empty_reward is not None and math.isfinite(r.empty_reward) else target
        r.r0 = initial_threshold(empty, target, r.config.alpha)

    def _threshold(self, r: RequestState) -> float | None:
        if r.target is None:
            return None
        return threshold_at(len(r.generated), r.r0, r.target, r.config.max_new_tokens)

    def _score(self, ctx: DecodeContext, items: list[tuple[RequestState, Candidate]]) -> None:
        scores = self._score_texts(ctx, [r for r, _ in items], [r.prepared.reward_prompt for r, _ in items],
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
                    self._set_target(r, target)

    @staticmethod
    def _score_texts(ctx: DecodeContext, owners: list[RequestState], prompts: list[str],
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

    def _decide(self, r: RequestState, cands: list[Candidate]) -> _Decision:
        c = r.config
        tau = self._threshold(r)
        for cand in cands:
            if not math.isfinite(cand.reward):
                r.stats.invalid_rewards += 1
            uniform = r.rng.random() if c.acceptance == "soft" else 0.0
            if tau is not None and accepts(cand.reward, tau, mode=c.acceptance, beta=c.beta, uniform=uniform):
                return _Decision(cand, tau)
            r.stats.rejections += 1
            r.segment_rejections += 1
            if math.isfinite(cand.reward) and (r.best is None or cand.reward > r.best.reward):
                r.best = cand
            if r.segment_rejections >= c.max_rejections:
                if r.best is None:
                    r.finish("error", RewardError(
                        f"segment {len(r.segments)} saw {r.segment_rejections} candidates and the reward model "
                        "returned no finite score for any of them; nothing can be accepted"))
                    return _Decision()
                return _Decision(r.best, tau, forced=True)
        return _Decision(None, tau)

    def _score_finished(self, ctx: DecodeContext, finished: list[RequestState]) -> None:
        """Unjudged strategies still report the final reward of each response (one call)."""
        scores = self._score_texts(ctx, finished, [r.prepared.reward_prompt for r in finished],
                                   [r.text for r in finished])
        for r, score in zip(finished, scores, strict=True):
            if score is not None and math.isfinite(score):
                r.reward = score
            elif score is not None:
                r.stats.invalid_rewards += 1


def _ids_covering(policy: HFPolicy, prefix: list[int], ids: list[int], chars: int) -> list[int]:
    """The shortest head of `ids` whose text (after `prefix`) reaches `chars` characters."""
    for k in range(len(ids) + 1):
        if len(policy.decode(prefix + ids[:k])) >= chars:
            return ids[:k]
    return ids


def fixed_horizon(config: StarsConfig) -> int:
    return config.horizon


def entropy_boundary(config: StarsConfig) -> BoundaryRule:
    """CARDS: a segment ends before a token whose predictive entropy reaches the threshold."""
    threshold, shortest = config.entropy_threshold, config.min_segment_tokens

    def ends(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths >= shortest) & (entropy(logits) >= threshold)

    return ends


__all__ = ["DecodeContext", "RoundOutput", "SegmentedDecoder", "entropy_boundary", "fixed_horizon"]
