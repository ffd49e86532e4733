"""Best-of-N over whole responses: N independent samples per prompt, one reward call, keep the best."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from stars_plugins.config import StarsConfig
from stars_plugins.decoding.segmented import (
    DecodeContext,
    SegmentedDecoder,
    SegmentedGroup,
    fixed_horizon,
    run_group,
    score_texts,
)
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent


class BestOfN:
    """Samples `num_candidates` whole responses per prompt in one lockstep batch (finished rows leave
    at round boundaries), scores each prompt's N responses in one batched call, returns the best."""

    name = "best_of_n"

    def __init__(self) -> None:
        self.sampler = SegmentedDecoder(
            self.name, judged=False, segment_budget=fixed_horizon, candidates=lambda c: 1, score_final=False
        )

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]:
        return [RequestState.create(p, config, self.name, rows=config.num_candidates) for p in prepared]

    def group_key(self, config: StarsConfig) -> tuple[Any, ...]:
        return (self.name, config.horizon)

    def open_group(self, ctx: DecodeContext) -> BestOfNGroup:
        return BestOfNGroup(self, ctx)

    def run(self, ctx: DecodeContext, requests: list[RequestState]) -> Iterator[Event]:
        return run_group(self.open_group(ctx), requests)


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
            samples = [RequestState.create(parent.prepared, parent.config, parent.strategy, seed_offset=j)
                       for j in range(parent.rows)]
            self.samples[id(parent)] = samples
            self.parent_of.update({id(s): parent for s in samples})
            self.active.append(parent)
            fresh.extend(samples)
        self.inner.admit(fresh)
        return events

    def evict(self) -> list[RequestState]:
        """Best-of-N samples are independent: evicted parents restart their unfinished samples."""
        parents = [p for p in self.active if not p.done]
        self.close()
        self.samples, self.parent_of, self.active = {}, {}, []
        return parents

    def fail_all(self, error: BaseException) -> list[Event]:
        events: list[Event] = []
        for parent in self.active:
            parent.finish("error", error)
            events.append(FinishEvent(parent, parent.result()))
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
        self.active = [p for p in self.active if not p.done]
        return events

    def _pick(self, parent: RequestState, samples: list[RequestState]) -> list[Event]:
        for s in samples:
            del self.parent_of[id(s)]
            parent.stats.sampled_tokens += s.stats.sampled_tokens
            parent.stats.rounds = max(parent.stats.rounds, s.stats.rounds)
        if parent.cancelled or any(s.finish_reason == "cancelled" for s in samples):
            parent.finish("cancelled")
            return [FinishEvent(parent, parent.result())]
        scores = score_texts(self.ctx, [parent] * len(samples), [parent.prepared.reward_prompt] * len(samples),
                             [s.text for s in samples])
        if parent.done:  # the reward call failed
            return [FinishEvent(parent, parent.result())]
        valid = [(score, i) for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
        parent.stats.invalid_rewards += len(samples) - len(valid)
        best = max(valid)[1] if valid else 0
        winner = samples[best]
        candidate = Candidate(list(winner.generated), winner.text, winner.finish_reason, sampled=0,
                              reward=scores[best] if valid else float("nan"))
        segment = parent.accept(candidate, threshold=None, forced=False)
        return [SegmentEvent(parent, segment), FinishEvent(parent, parent.result())]
