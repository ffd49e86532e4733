"""Best-of-N over whole responses: N independent samples per prompt, one reward call, keep the best."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stars_plugins.config import StarsConfig
from stars_plugins.decoding.judges import NoJudge
from stars_plugins.decoding.rules import FixedHorizon
from stars_plugins.decoding.scoring import DecodeContext, release, score_texts
from stars_plugins.decoding.segmented import SegmentedDecoder, SegmentedGroup
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent
from stars_plugins.errors import RewardError


class BestOfN:
    """Samples `num_candidates` whole responses per prompt in one lockstep batch, scores each
    prompt's N responses in one batched call and returns the best.

    The samples run as independent unjudged rows in rounds of `horizon` tokens, so that finished
    rows leave and new requests join at round boundaries; a response is only judged once whole.
    """

    name = "best_of_n"
    settings = frozenset({"horizon", "num_candidates"})
    rejects = False

    def __init__(self) -> None:
        self.sampler = SegmentedDecoder(self.name, FixedHorizon(), NoJudge(), candidates=lambda c: 1)

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]:
        # Greedy decoding (temperature 0) gives N identical responses: one is enough.
        samples = 1 if config.temperature == 0 else config.num_candidates
        return [RequestState.create(p, config, self.name, rows=samples) for p in prepared]

    def group_key(self, config: StarsConfig) -> tuple[Any, ...]:
        return self.sampler.group_key(config)

    def open_group(self, ctx: DecodeContext) -> BestOfNGroup:
        return BestOfNGroup(self, ctx)


class BestOfNGroup:
    """Parents (the caller's requests) and their N samples, which run as independent rows."""

    def __init__(self, strategy: BestOfN, ctx: DecodeContext):
        self.ctx = ctx
        self.inner = SegmentedGroup(strategy.sampler, ctx)
        self.samples: dict[int, list[RequestState]] = {}
        self.parent_of: dict[int, RequestState] = {}
        self.active: list[RequestState] = []

    @property
    def empty(self) -> bool:
        return not self.active

    @property
    def rows(self) -> int:
        return self.inner.rows

    @property
    def requests(self) -> list[RequestState]:
        return list(self.active)

    def accepts_newcomers(self) -> bool:
        return self.inner.accepts_newcomers()

    def admit(self, parents: Sequence[RequestState]) -> list[Event]:
        events: list[Event] = []
        fresh = []
        for parent in parents:
            if parent.done:
                events.append(FinishEvent(parent, parent.result()))
                continue
            samples = [
                RequestState.create(parent.prepared, parent.config, parent.strategy, seed_offset=j)
                for j in range(parent.rows)
            ]
            self.samples[id(parent)] = samples
            self.parent_of.update({id(s): parent for s in samples})
            self.active.append(parent)
            fresh.extend(samples)
        self.inner.admit(fresh)
        return events

    def evict(self) -> list[RequestState]:
        """Best-of-N samples are independent: evicted parents restart their unfinished samples."""
        parents = [p for p in self.active if not p.done]
        release(self.ctx, self.active)
        self.close()
        self.samples, self.parent_of, self.active = {}, {}, []
        return parents

    def fail_all(self, error: BaseException) -> list[Event]:
        events: list[Event] = []
        for parent in self.active:
            parent.finish("error", error)
            events.append(FinishEvent(parent, parent.result()))
        release(self.ctx, self.active)
        self.close()
        self.active = []
        return events

    def close(self) -> None:
        self.inner.close()

    def step(self) -> list[Event]:
        for parent in self.active:
            if parent.cancelled:
                for sample in self.samples[id(parent)]:
                    sample.cancelled = True
        events: list[Event] = []
        for event in self.inner.step():
            if not isinstance(event, FinishEvent):
                continue
            parent = self.parent_of.get(id(event.request))  # None: its parent was decided this step
            if parent is None or parent.done or not all(s.done for s in self.samples[id(parent)]):
                continue
            events.extend(self._pick(parent, self.samples.pop(id(parent))))
        finished = [p for p in self.active if p.done]
        release(self.ctx, finished)
        self.active = [p for p in self.active if not p.done]
        return events

    def _pick(self, parent: RequestState, samples: list[RequestState]) -> list[Event]:
        for s in samples:
            del self.parent_of[id(s)]
        return pick_best(self.ctx, parent, samples)


def pick_best(ctx: DecodeContext, parent: RequestState, samples: list[RequestState]) -> list[Event]:
    """Score a request's finished samples in one reward call and accept the best as its answer."""
    for s in samples:
        parent.stats.sampled_tokens += s.stats.sampled_tokens
        parent.stats.rounds = max(parent.stats.rounds, s.stats.rounds)
    if parent.cancelled or any(s.finish_reason == "cancelled" for s in samples):
        parent.finish("cancelled")
        return [FinishEvent(parent, parent.result())]
    scores = score_texts(ctx, [parent] * len(samples), [s.text for s in samples])
    if parent.done:  # the reward call failed
        return [FinishEvent(parent, parent.result())]
    valid = [(score, i) for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
    parent.stats.invalid_rewards += len(samples) - len(valid)
    if not valid:
        parent.finish(
            "error",
            RewardError(
                f"reward {ctx.reward.name!r} returned no finite score for any of the {len(samples)} "
                "responses; a reward model must return finite numbers"
            ),
        )
        return [FinishEvent(parent, parent.result())]
    best = max(valid)[1]
    winner = samples[best]
    candidate = Candidate(list(winner.generated), winner.text, winner.finish_reason, sampled=0, reward=scores[best])
    segment = parent.accept(candidate, threshold=None, forced=False)
    return [SegmentEvent(parent, segment), FinishEvent(parent, parent.result())]
