"""Best-of-N over whole responses: N independent samples per prompt, one reward call, keep the best."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from stars_plugins.config import StarsConfig
from stars_plugins.decoding.segmented import DecodeContext, SegmentedDecoder, fixed_horizon
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent


class BestOfN:
    """Samples `num_candidates` whole responses per prompt in one lockstep batch (finished rows leave
    at round boundaries), scores each prompt's N responses in one batched call, returns the best."""

    name = "best_of_n"

    def __init__(self) -> None:
        self._sampler = SegmentedDecoder(
            self.name, judged=False, segment_budget=fixed_horizon, candidates=lambda c: 1, score_final=False
        )

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]:
        return [RequestState.create(p, config, self.name, rows=config.num_candidates) for p in prepared]

    def run(self, ctx: DecodeContext, requests: list[RequestState]) -> Iterator[Event]:
        samples: dict[int, list[RequestState]] = {
            id(r): [
                RequestState.create(r.prepared, r.config, self.name, seed_offset=j) for j in range(r.rows)
            ]
            for r in requests
        }
        parent_of = {id(s): r for r in requests for s in samples[id(r)]}
        all_samples = [s for r in requests for s in samples[id(r)]]
        for event in self._sampler.run(ctx, all_samples):
            for r in requests:
                if r.cancelled:
                    for s in samples[id(r)]:
                        s.cancelled = True
            if not isinstance(event, FinishEvent):
                continue
            parent = parent_of[id(event.request)]
            if parent.done or not all(s.done for s in samples[id(parent)]):
                continue
            yield from self._pick(ctx, parent, samples[id(parent)])

    def _pick(self, ctx: DecodeContext, parent: RequestState, samples: list[RequestState]) -> Iterator[Event]:
        for s in samples:
            parent.stats.sampled_tokens += s.stats.sampled_tokens
            parent.stats.rounds = max(parent.stats.rounds, s.stats.rounds)
        if parent.cancelled or any(s.finish_reason == "cancelled" for s in samples):
            parent.finish("cancelled")
            yield FinishEvent(parent, parent.result())
            return
        texts = [s.text for s in samples]
        scores = SegmentedDecoder._score_texts(
            ctx, [parent] * len(samples), [parent.prepared.reward_prompt] * len(samples), texts
        )
        if parent.done:  # the reward call failed
            yield FinishEvent(parent, parent.result())
            return
        valid = [(score, i) for i, score in enumerate(scores) if score is not None and math.isfinite(score)]
        parent.stats.invalid_rewards += len(samples) - len(valid)
        best = max(valid)[1] if valid else 0
        winner = samples[best]
        candidate = Candidate(list(winner.generated), winner.text, winner.finish_reason, sampled=0,
                              reward=scores[best] if valid else float("nan"))
        segment = parent.accept(candidate, threshold=None, forced=False)
        yield SegmentEvent(parent, segment)
        yield FinishEvent(parent, parent.result())
