"""Judges: what a round's candidates are worth, and which one (if any) each request accepts.

A judge is a small object, in the spirit of transformers' `LogitsProcessor`s:
- `start(ctx, requests)` runs when requests join a group (a judge sets up its per-request state);
- `forced_tokens(request)` names tokens a request must replay next round instead of sampling;
- `rejected_rounds(request)` counts the rounds in a row in which the request's current segment
  found no acceptable candidate (the decoding loop widens such requests, see `segmented.py`);
- `decide(ctx, items)` gets every active request with its candidates of this round (an empty list
  for a request that replayed) and returns one `Decision` per request. A request whose reward
  failed is finished with the error by the judge (`request.finish("error", ...)`).

Judge-specific per-request state lives in `request.judge_state`, never in `RequestState` itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stars_plugins.acceptance import accepts, calibrated_target, initial_threshold, quantile, threshold_at
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.actions import CallStart, alternative_candidates, call_start
from stars_plugins.decoding.scoring import DecodeContext, score_texts
from stars_plugins.decoding.state import Candidate, RequestState
from stars_plugins.errors import RewardError


@dataclass
class Decision:
    """A request's verdict on one round: accept `candidate`, or (None) reject them all."""

    candidate: Candidate | None = None
    threshold: float | None = None
    forced: bool = False  # accepted without passing the threshold (best after max_rejections)
    rejections: int = 0  # candidates rejected for this segment before it was accepted


Items = Sequence[tuple[RequestState, list[Candidate]]]


class Judge(Protocol):
    settings: frozenset[str]  # the config settings the judge reads (of config.STRATEGY_SETTINGS)
    rejects: bool  # may reject every candidate of a segment (which is then resampled)

    def start(self, ctx: DecodeContext, requests: Sequence[RequestState]) -> None: ...

    def forced_tokens(self, request: RequestState) -> list[int] | None: ...

    def rejected_rounds(self, request: RequestState) -> int: ...

    def decide(self, ctx: DecodeContext, items: Items) -> list[Decision]: ...


class NoJudge:
    """Every first candidate is accepted and nothing is scored (plain sampling)."""

    settings: frozenset[str] = frozenset()
    rejects = False

    def start(self, ctx: DecodeContext, requests: Sequence[RequestState]) -> None:
        pass

    def forced_tokens(self, request: RequestState) -> list[int] | None:
        return None

    def rejected_rounds(self, request: RequestState) -> int:
        return 0

    def decide(self, ctx: DecodeContext, items: Items) -> list[Decision]:
        return [Decision(candidates[0]) for _, candidates in items]


class FinalScoreJudge(NoJudge):
    """Every first candidate is accepted; the finished response is scored (one batched call per
    round) to report its reward. A reward that fails or is not a finite number fails the request."""

    def decide(self, ctx: DecodeContext, items: Items) -> list[Decision]:
        final = [(r, candidates[0]) for r, candidates in items if candidates[0].finish is not None]
        scores = score_texts(ctx, [r for r, _ in final], [c.text for _, c in final])
        for (r, candidate), score in zip(final, scores, strict=True):
            if r.done:  # the reward raised for this request
                continue
            if score is None or not math.isfinite(score):
                r.stats.invalid_rewards += 1
                r.finish(
                    "error",
                    RewardError(
                        f"reward {ctx.reward.name!r} returned {score} for the final response; "
                        "a reward model must return a finite number"
                    ),
                )
            else:
                candidate.reward = score
        return super().decide(ctx, items)


@dataclass
class ThresholdState:
    """A request's adaptive threshold and the candidates it has seen for the current segment."""

    rng: random.Random  # soft-acceptance draws
    empty_reward: float | None = None
    target: float | None = None
    r0: float | None = None
    rejections: int = 0  # of the current segment
    rejected_rounds: int = 0  # rounds in a row without an acceptable candidate (current segment)
    best: Candidate | None = None  # best finite-scored candidate of the current segment
    replay: Candidate | None = None  # forced best from an earlier round: re-fed next round
    alpha: float = 0.5
    seen: list[float] = field(default_factory=list)  # finite rewards of this request's earlier candidates
    cap_quantile: float | None = None  # cap the target at this quantile of `seen` (None: no cap)
    action: CallStart | None = None  # a required call among several tools (actions.py)
    alternatives_offered: bool = False  # the other actions were scored for the current segment
    replay_passed: bool = False  # `replay` passed the threshold (an offered action), not forced

    def segment_accepted(self) -> None:
        self.rejections, self.best, self.replay, self.rejected_rounds = 0, None, None, 0
        self.alternatives_offered = self.replay_passed = False

    def calibrate(self, target: float, alpha: float) -> None:
        self.target, self.alpha = target, alpha
        self.r0 = self._r0(target)

    def _r0(self, target: float) -> float:
        empty = self.empty_reward if self.empty_reward is not None and math.isfinite(self.empty_reward) else target
        return initial_threshold(empty, target, self.alpha)

    def effective_target(self) -> float | None:
        """The target, capped at what this request's own candidates reach (when asked to)."""
        if self.target is None or self.cap_quantile is None or not self.seen:
            return self.target
        return min(self.target, quantile(self.seen, self.cap_quantile))

    def threshold(self, accepted_tokens: int, max_new_tokens: int) -> float | None:
        target = self.effective_target()
        if target is None or self.r0 is None:
            return None
        r0 = self.r0 if target == self.target else self._r0(target)
        return threshold_at(accepted_tokens, r0, target, max_new_tokens)


def _state(r: RequestState) -> ThresholdState:
    assert isinstance(r.judge_state, ThresholdState)
    return r.judge_state


def _rejection_limit(config: StarsConfig) -> int:
    """Rejections of a segment after which its best candidate is kept (at once under greedy
    decoding, where every resample is the same text)."""
    return 0 if config.temperature == 0 else config.max_rejections


class ThresholdJudge:
    """STARS / CARDS: accept the first candidate (in index order) whose reward passes the adaptive
    threshold tau(t); after `max_rejections` rejections take the best candidate seen.

    The target comes from the config, else the reward model's `default_target`, else each
    request's own first-round candidate rewards (its own `calibration_quantile`), so a request's
    threshold never depends on what shares its batch.

    Greedy decoding (temperature 0) makes every resample of a segment the same text: then a
    rejected segment is kept at once (as a forced accept), never resampled.
    """

    settings = frozenset({
        "max_rejections", "max_adaptive_candidates", "alpha", "beta", "acceptance", "target_reward",
        "target_cap_quantile", "calibration_quantile", "offer_other_tools",
    })  # fmt: skip
    rejects = True

    def start(self, ctx: DecodeContext, requests: Sequence[RequestState]) -> None:
        """R(prompt, "") for every new request, in one call: where each threshold starts."""
        new = [r for r in requests if r.judge_state is None]  # re-admitted requests keep theirs
        for r in new:
            r.judge_state = ThresholdState(
                rng=random.Random(r.seed),
                cap_quantile=r.config.target_cap_quantile,
                action=call_start(r, ctx.policy),
            )
        scores = score_texts(ctx, new, [""] * len(new))
        for r, score in zip(new, scores, strict=True):
            if score is None:  # the reward failed: the request has finished with the error
                continue
            if not math.isfinite(score):
                r.stats.invalid_rewards += 1
            state = _state(r)
            state.empty_reward = score
            target = r.config.target_reward if r.config.target_reward is not None else ctx.reward.default_target
            if target is not None:
                state.calibrate(target, r.config.alpha)

    def forced_tokens(self, request: RequestState) -> list[int] | None:
        state = request.judge_state  # None until `start` has run (the first segment need not wait for it)
        replay = state.replay if isinstance(state, ThresholdState) else None
        return None if replay is None else replay.token_ids

    def rejected_rounds(self, request: RequestState) -> int:
        state = request.judge_state
        if not isinstance(state, ThresholdState) or state.replay is not None:
            return 0  # a replay needs one row
        return state.rejected_rounds

    def decide(self, ctx: DecodeContext, items: Items) -> list[Decision]:
        self._score(ctx, [(r, c) for r, candidates in items for c in candidates])
        decisions, judged = [], []  # judged: the decision weighed this round's candidates (not a replay)
        for r, candidates in items:
            judged.append(not r.done and _state(r).replay is None)
            if r.done:
                decisions.append(Decision())
                continue
            state = _state(r)
            if state.replay is not None:
                forced = not state.replay_passed
                decision = Decision(state.replay, self._threshold(r), forced=forced, rejections=state.rejections)
            else:
                if state.target is None:
                    self._calibrate(ctx, r, candidates)
                decision = Decision() if r.done else self._judge(r, candidates)
                if state.cap_quantile is not None:
                    state.seen.extend(c.reward for c in candidates if math.isfinite(c.reward))
            decisions.append(decision)
        self._offer_other_actions(ctx, items, decisions, judged)
        for (r, _), decision in zip(items, decisions, strict=True):
            if decision.candidate is not None:
                _state(r).segment_accepted()
            elif not r.done:
                _state(r).rejected_rounds += 1
        return decisions

    def _score(self, ctx: DecodeContext, scored: list[tuple[RequestState, Candidate]]) -> None:
        """One reward call; a response cut inside a required call's function name is judged with
        the name completed (actions.py)."""
        texts = []
        for r, c in scored:
            action = _state(r).action
            texts.append(c.text if action is None else action.judged_text(c.text))
        scores = score_texts(ctx, [r for r, _ in scored], texts)
        for (_, candidate), score in zip(scored, scores, strict=True):
            if score is not None:
                candidate.reward = score

    def _offer_other_actions(
        self, ctx: DecodeContext, items: Items, decisions: list[Decision], judged: list[bool]
    ) -> None:
        """Requests whose required call's first segment found no candidate that passes (rejected,
        or about to keep the best as a forced accept) get the bound tools their candidates did not
        name scored as candidates too, once per segment (actions.py). A chosen one has no batch
        row, so it is replayed next round; a forced best of this round's own is kept as before."""
        offers = []
        for i, (r, candidates) in enumerate(items):
            if not judged[i] or r.done:
                continue
            state, decision = _state(r), decisions[i]
            if (
                (decision.candidate is None or decision.forced)
                and state.action is not None
                and r.config.offer_other_tools
                and not state.alternatives_offered
                and not r.generated
            ):
                state.alternatives_offered = True
                others = alternative_candidates(r, state.action, [c.text for c in candidates], ctx.policy)
                if others:
                    offers.append((i, r, others))
        if not offers:
            return
        self._score(ctx, [(r, c) for _, r, others in offers for c in others])
        for i, r, others in offers:
            if r.done:
                continue
            kept = decisions[i].candidate
            if kept is not None:  # undo the forced accept's bookkeeping: the offered actions compete
                r.stats.rejected_tokens += kept.sampled
            chosen, passed = self._judge_offered(r, others)
            tau, state = self._threshold(r), _state(r)
            if chosen is None:
                decisions[i] = Decision(None, tau)
            elif chosen.row >= 0:  # the best of this round's own candidates, forced
                r.stats.rejected_tokens -= chosen.sampled
                decisions[i] = Decision(chosen, tau, forced=True, rejections=state.rejections)
            else:  # no batch row holds it: its tokens are replayed next round
                state.replay, state.replay_passed = chosen, passed
                decisions[i] = Decision(None, tau)

    def _judge_offered(self, r: RequestState, others: list[Candidate]) -> tuple[Candidate | None, bool]:
        """(chosen, whether it passed): the first offered action that passes the threshold; else,
        once the segment's rejections reach `max_rejections` (every offered action is weighed
        first), the best candidate seen; else none."""
        state, tau = _state(r), self._threshold(r)
        for cand in others:
            if self._passes_or_is_rejected(r, cand, tau):
                return cand, True
        if state.rejections >= _rejection_limit(r.config):
            return state.best, False
        return None, False

    @staticmethod
    def _passes_or_is_rejected(r: RequestState, cand: Candidate, tau: float | None) -> bool:
        """Whether `cand` passes the threshold; if not, count its rejection and keep it as the
        segment's best when it scores highest so far."""
        c, state = r.config, _state(r)
        uniform = state.rng.random() if c.acceptance == "soft" else 0.0
        if tau is not None and accepts(cand.reward, tau, mode=c.acceptance, beta=c.beta, uniform=uniform):
            return True
        r.stats.rejections += 1
        r.stats.rejected_tokens += cand.sampled
        state.rejections += 1
        if math.isfinite(cand.reward) and (state.best is None or cand.reward > state.best.reward):
            state.best = cand
        return False

    @staticmethod
    def _threshold(r: RequestState) -> float | None:
        return _state(r).threshold(len(r.generated), r.config.max_new_tokens)

    @staticmethod
    def _calibrate(ctx: DecodeContext, r: RequestState, candidates: list[Candidate]) -> None:
        """No target from the config or the reward model: a quantile of this request's own
        first-round candidate rewards."""
        target = calibrated_target([c.reward for c in candidates], r.config.calibration_quantile)
        if target is None:
            r.finish(
                "error",
                RewardError(
                    f"reward {ctx.reward.name!r} returned no finite score in the first round, so no "
                    "target reward could be calibrated; set target_reward or fix the reward model"
                ),
            )
        else:
            _state(r).calibrate(target, r.config.alpha)

    def _judge(self, r: RequestState, candidates: list[Candidate]) -> Decision:
        c, state = r.config, _state(r)
        tau = self._threshold(r)
        for cand in candidates:
            if not math.isfinite(cand.reward):
                r.stats.invalid_rewards += 1
            if self._passes_or_is_rejected(r, cand, tau):
                return Decision(cand, tau, rejections=state.rejections)
            if state.rejections >= _rejection_limit(c):
                best = state.best
                if best is None:
                    r.finish(
                        "error",
                        RewardError(
                            f"segment {len(r.segments)} saw {state.rejections} candidates and the reward model "
                            "returned no finite score for any of them; nothing can be accepted"
                        ),
                    )
                    return Decision()
                r.stats.rejected_tokens -= best.sampled  # its tokens are kept after all
                if best.row < 0 and best.finish is None:
                    # From an earlier round: its rows are gone, so its tokens are re-fed next round.
                    state.replay = best
                    return Decision()
                return Decision(best, tau, forced=True, rejections=state.rejections)
        return Decision(None, tau)


__all__ = ["Decision", "FinalScoreJudge", "Judge", "NoJudge", "ThresholdJudge", "ThresholdState"]
