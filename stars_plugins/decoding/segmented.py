"""The round loop shared by STARS, CARDS-style segmentation and plain sampling.

A strategy here is a segment rule (`rules.py`: how long a round runs) plus a judge (`judges.py`:
which candidate each request accepts). One round: every active row extends its request's accepted
prefix by one candidate segment, all rows in one `PolicyBatch.run_round`; the judge scores and
decides; accepted rows are copied over their siblings, rejected ones are rolled back.

A `SegmentedGroup` is one such batch, advanced a round at a time (`step`), which new requests can
join between rounds (`admit`): the scheduler's unit of continuous batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stars_plugins.backends.protocol import BoundaryRule, PolicyBackend, PolicyBatch
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.judges import Judge
from stars_plugins.decoding.rules import SegmentRule
from stars_plugins.decoding.scoring import DecodeContext, release
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent, sampling_rows
from stars_plugins.decoding.validity import ConstraintFilter
from stars_plugins.errors import ConfigError


class SegmentedDecoder:
    """A strategy made of a segment rule and a judge. Each request samples `num_candidates` rows
    per segment, or `candidates(config)` when given (plain sampling: one)."""

    def __init__(
        self,
        name: str,
        rule: SegmentRule,
        judge: Judge,
        *,
        candidates: Callable[[StarsConfig], int] | None = None,
    ):
        self.name = name
        self.rule = rule
        self.judge = judge
        self._candidates = candidates
        self.settings = rule.settings | judge.settings | ({"num_candidates"} if candidates is None else frozenset())
        self.rejects = judge.rejects

    def candidates(self, config: StarsConfig) -> int:
        """Rows a request samples per segment: greedy decoding (temperature 0) makes every candidate
        the same text, so then one."""
        if config.temperature == 0:
            return 1
        return config.num_candidates if self._candidates is None else self._candidates(config)

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]:
        return [RequestState.create(p, config, self.name, rows=self.candidates(config)) for p in prepared]

    def row_count(self, r: RequestState, judge: Judge | None = None) -> int:
        """Rows a request samples its next segment on: `candidates`, doubled for every rejected
        round in a row up to `max_adaptive_candidates` (see `SegmentedGroup._relayout`). `judge`:
        the judge that decides the request's segments (default: this decoder's own; a
        `ConstraintFilter` around it counts rounds without a valid candidate too)."""
        base = self.candidates(r.config)
        rounds = getattr(judge or self.judge, "rejected_rounds", lambda request: 0)(r)
        if rounds <= 0 or r.config.max_adaptive_candidates <= base:
            return base
        return min(base << min(rounds, 16), r.config.max_adaptive_candidates)

    def group_key(self, config: StarsConfig) -> tuple[Any, ...]:
        """Requests with equal keys (and the same reward model) can share one lockstep batch."""
        return (self.name, *self.rule.key(config))

    def open_group(self, ctx: DecodeContext) -> SegmentedGroup:
        return SegmentedGroup(self, ctx)


class SegmentedGroup:
    """One lockstep batch of requests that share a segment rule and a reward model."""

    def __init__(self, decoder: SegmentedDecoder, ctx: DecodeContext):
        self.decoder = decoder
        self.ctx = ctx
        # A policy that cannot mask tokens while sampling gets constrained requests checked at each
        # segment boundary instead: candidates that cannot become valid are rejected (validity.py).
        masks = getattr(ctx.policy, "supports_constraints", False)
        self.judge: Judge = decoder.judge if masks else ConstraintFilter(decoder.judge)
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
        """Whether requests can join between rounds (needs a batch whose rows can be concatenated)."""
        return self.batch is None or self.batch.mergeable()

    # ------------------------------------------------------------------ membership
    def admit(self, requests: Sequence[RequestState]) -> list[Event]:
        """Prefill `requests` and add their rows to the batch; they take part from the next round.

        Requests that already generated (after an eviction) are re-prefilled with their accepted
        tokens and keep their judge state, random streams and stats.
        """
        self.judge.start(self.ctx, [r for r in requests if not r.done])
        done = [r for r in requests if r.done]
        release(self.ctx, done)
        events: list[Event] = [FinishEvent(r, r.result()) for r in done]
        new = [r for r in requests if not r.done]
        if not new:
            return events
        boundary = self.decoder.rule.boundary(new[0].config)
        if boundary is not None and not self.ctx.policy.supports_boundary:
            raise ConfigError(
                f"strategy {self.decoder.name!r} ends segments by a next-token rule, which the policy "
                f"backend of {self.ctx.policy.name} does not support; use strategy='stars' instead"
            )
        fresh = self.ctx.policy.open_batch(
            [r.prepared.token_ids + tuple(r.generated) for r in new],
            [r.rows for r in new],
            sampling_rows(new, constraint_compiler(self.ctx.policy, new)),
        )
        if self.batch is None:
            self.batch, self.boundary = fresh, boundary
        else:
            self.batch.merge(fresh)
        self.owners.extend(r for r in new for _ in range(r.rows))
        self.active.extend(new)
        return events

    def evict(self) -> list[RequestState]:
        """Empty the group, keeping every request's accepted state (to re-admit it elsewhere)."""
        requests = [r for r in self.active if not r.done]
        release(self.ctx, self.active)
        self.close()
        self.owners, self.active = [], []
        return requests

    def fail_all(self, error: BaseException) -> list[Event]:
        events: list[Event] = []
        for r in self.active:
            r.finish("error", error)
            events.append(FinishEvent(r, r.result()))
        release(self.ctx, self.active)
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
            release(self.ctx, finished)
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
        rule, judge, policy, batch = self.decoder.rule, self.judge, self.ctx.policy, self.batch
        active = [r for r in self.active if not r.done]
        budgets, forced = [], {}
        for row, r in enumerate(self.owners):
            replay = None if r.done else judge.forced_tokens(r)
            if r.done:
                budgets.append(0)
            elif replay is not None:
                forced[row] = replay
                budgets.append(len(replay))
            else:
                budgets.append(min(rule.budget(r.config), r.remaining))
        out = batch.run_round(budgets, self.boundary, forced)
        for row, error in out.errors.items():  # a failed segment request fails its own request only
            if not self.owners[row].done:
                self.owners[row].finish("error", error)
        active = [r for r in active if not r.done]

        rows_of: dict[int, list[int]] = {}
        for row, r in enumerate(self.owners):
            rows_of.setdefault(id(r), []).append(row)
        items: list[tuple[RequestState, list[Candidate]]] = []
        for r in active:
            r.stats.rounds += 1
            candidates = []
            for row in rows_of[id(r)]:
                if row in forced:
                    continue
                tokens = out.segment(row)
                complete = True if out.complete is None else out.complete[row]
                candidate = candidate_of(policy, r, tokens, bool(out.hit_eos[row]), complete)
                candidate.row = row
                candidates.append(candidate)
                r.stats.sampled_tokens += len(tokens)
            items.append((r, candidates))

        decisions = judge.decide(self.ctx, items)

        accepted: dict[int, int] = {}  # id(request) -> the row to copy into its next rows
        rollback: list[int] = []
        events: list[Event] = []
        for (r, candidates), decision in zip(items, decisions, strict=True):
            chosen = decision.candidate
            winner = chosen.row if chosen is not None else -1  # -1: replayed, or nothing accepted
            for c in candidates:
                c.row = -1  # its round is over; only its tokens can come back (replay)
            if r.done:  # its reward failed
                continue
            rows = rows_of[id(r)]
            if chosen is None:
                rollback.extend(rows)
                continue
            accepted[id(r)] = winner if winner >= 0 else rows[0]  # replayed rows are all alike
            segment = r.accept(
                chosen, threshold=decision.threshold, forced=decision.forced, rejections=decision.rejections
            )
            events.append(SegmentEvent(r, segment))
        batch.rollback(rollback, out)
        self._relayout(rows_of, accepted)
        return events

    def _relayout(self, rows_of: dict[int, list[int]], accepted: dict[int, int]) -> None:
        """Lay out every request's rows for the next round, request by request in row order.

        An accepted candidate is copied over its request's rows. A request whose segment keeps
        being rejected gets `num_candidates * 2**rounds` rows (rounds: rejected rounds in a row, up
        to `max_adaptive_candidates`), all copies of its first row: each copy draws its own random
        stream, and the judge accepts the first passing candidate in row order, so a round of m
        candidates picks what m sequential one-candidate rounds would (same distribution, fewer
        rounds). The row count depends on the request's own history only, never on what shares
        the batch, so a seeded request's output stays the same whatever its neighbours.
        """
        assert self.batch is not None
        source: list[int] = []
        owners: list[RequestState] = []
        for row, r in enumerate(self.owners):
            rows = rows_of[id(r)]
            if row != rows[0]:
                continue
            if r.done:  # finished this round: its rows are dropped after the round
                wanted = rows
            else:
                count = self._row_count(r)
                if id(r) in accepted:
                    wanted = [accepted[id(r)]] * count
                elif count == len(rows):
                    wanted = rows
                else:
                    wanted = [rows[0]] * count
                r.rows = count
            source.extend(wanted)
            owners.extend(r for _ in wanted)
        if source != list(range(self.batch.num_rows)):
            self.batch.select_rows(source)
        self.owners = owners

    def _row_count(self, r: RequestState) -> int:
        return self.decoder.row_count(r, self.judge)


def constraint_compiler(policy: PolicyBackend, requests: Sequence[RequestState]) -> Callable[[Any], Any] | None:
    """The policy's constraint compiler when some of `requests` are constrained and the policy
    masks tokens while sampling (`supports_constraints`); else None: rows sample unconstrained and
    the group's `ConstraintFilter` judges their validity at segment boundaries."""
    if all(r.config.constraint is None for r in requests) or not getattr(policy, "supports_constraints", False):
        return None
    return policy.compile_constraint  # type: ignore[attr-defined]


def candidate_of(
    policy: PolicyBackend, r: RequestState, tokens: list[int], hit_eos: bool, complete: bool = True
) -> Candidate:
    """A sampled segment as a candidate: EOS dropped, cut at the first stop string, and marked
    finished when it reaches EOS, a stop string or the token budget. Under a constraint, the budget
    running out ends it as "stop" when the output is a complete match, else "constraint_incomplete"."""
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
        finish = "length" if r.config.constraint is None else ("stop" if complete else "constraint_incomplete")
    if finish is not None:
        text = text.rstrip("\ufffd")  # a multi-byte character cut by the budget: not part of the answer
    return Candidate(ids, text, finish, sampled=len(tokens))


def _ids_covering(policy: PolicyBackend, prefix: list[int], ids: list[int], chars: int) -> list[int]:
    """The shortest head of `ids` whose text (after `prefix`) reaches `chars` characters."""
    for k in range(len(ids) + 1):
        if len(policy.decode(prefix + ids[:k])) >= chars:
            return ids[:k]
    return ids


__all__ = ["SegmentedDecoder", "SegmentedGroup", "candidate_of", "constraint_compiler"]
