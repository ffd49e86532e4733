"""`SharedBatch`: one policy batch for every request of a loaded policy, each row on its own clock.

Every admitted request (any strategy, horizon, candidate count, sampling settings or reward model)
becomes rows of the one batch, with a per-request *job*: STARS / CARDS segment, judge, accept or
reject; plain sampling segments without a judge (its final response scored); best-of-N runs N
sample jobs and picks the best once all are whole.

The heartbeat: `step()` advances every row that is in a segment by Q tokens (`PolicyBatch.advance`)
and judges the rows whose segment completed, with ONE call per reward model (and judge) over all of
them. Q is chosen so that rows meet: by default ("next") the batch runs until the next fixed-horizon
segment ends, so rows with K = 8 and K = 16 that began together meet every 8 steps and their
reward calls stay batched, while no row waits for a longer segment than its own. Alternatives, for
measuring the trade-off (`heartbeat=`): "gcd" (Q = gcd of the live horizons), "step" (Q = 1: judged
as soon as done, the most reward calls) and "longest" (lockstep rounds that last until the longest
segment ends, as when mixed rows share one `run_round`).

Reward and policy overlap: every reward model has a worker thread that runs its calls (admission
scores, verdicts, best-of-N picks, cache releases) one at a time; rows waiting for a verdict are
parked (idle, drawing no random numbers) while the other rows keep decoding. At a heartbeat the
engine waits for pending verdicts only while that costs less than parking their rows for one more
heartbeat (up to the parked fraction of the rows times the time of one advance); a slow or blocked
reward model therefore stalls its own requests only, and a failing one fails its own requests only.

Per-request guarantees carry over from the round loop (`segmented.py`): a rejection drops at most
that request's K tokens; candidates are judged first-accepted-in-row-order; calibration is per
request; a request's row count depends on its own history; rows draw from their own random streams
and idle rows draw nothing, so a seeded request's output does not depend on what shares the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from stars_plugins.backends.protocol import BoundaryRule, PolicyBackend, PolicyBatch, SegmentDone
from stars_plugins.decoding.best_of_n import BestOfN, pick_best
from stars_plugins.decoding.judges import FinalScoreJudge, Judge, NoJudge
from stars_plugins.decoding.rules import FixedHorizon
from stars_plugins.decoding.scoring import DecodeContext, release
from stars_plugins.decoding.segmented import SegmentedDecoder, candidate_of, constraint_compiler
from stars_plugins.decoding.state import Candidate, Event, FinishEvent, RequestState, SegmentEvent, sampling_rows
from stars_plugins.decoding.validity import ConstraintFilter
from stars_plugins.errors import ConfigError

HEARTBEATS = ("next", "gcd", "step", "longest")
#: Heartbeat of rows whose segments end by a boundary rule (CARDS) when no fixed horizon is decoding.
BOUNDARY_CHUNK = 4


def shares_batch(strategy: Any) -> bool:
    """Whether a strategy's requests can run as jobs of the shared batch (the built-in ones can)."""
    return isinstance(strategy, SegmentedDecoder | BestOfN)


def heartbeat_steps(
    rule: str, *, left: Sequence[int], fixed: Sequence[bool], periods: Sequence[int], max_chunk: int
) -> int:
    """Q, the steps one heartbeat decodes, from the decoding segments' steps `left`, whether each
    ends at a fixed length (`fixed`: a horizon or a replay, not a boundary rule) and the live
    horizons (`periods`). "next" stops where the first fixed-length segment ends, so rows with
    K = 4 and K = 6 that began together stop at 4, 6, 8 and meet at 12."""
    if rule == "step":
        return 1
    if rule == "longest":
        return max(left)
    if rule == "gcd":
        q = math.gcd(*periods) if periods else BOUNDARY_CHUNK
    else:
        positive = [n for n, f in zip(left, fixed, strict=True) if f and n > 0]
        q = min(positive) if positive else BOUNDARY_CHUNK
    return max(1, min(q, max_chunk))


@dataclass
class Origin:
    """What a request was submitted with: its strategy, its context and its reward's identity."""

    strategy: Any
    ctx: DecodeContext
    reward_key: Any


@dataclass
class _Parent:
    """A best-of-N request: its samples run as jobs; once all are whole the best is picked."""

    request: RequestState
    origin: Origin
    samples: list[_Job] = field(default_factory=list)
    picking: bool = False


@dataclass(eq=False)
class _Job:
    """One request's rows in the shared batch and where its current segment stands."""

    request: RequestState
    decoder: SegmentedDecoder
    origin: Origin
    judge: Judge  # decides its segments: the decoder's judge, or a `ConstraintFilter` around it
    parent: _Parent | None = None  # set for a best-of-N sample
    phase: str = "ready"  # ready | decoding | complete (all rows done) | parked (being judged)
    budget: int = 0  # of the current segment
    begun: int = 0  # the engine clock when it began
    forced: bool = False  # the current segment replays tokens
    done: dict[int, SegmentDone] = field(default_factory=dict)  # local row -> its finished segment
    verdict: tuple[list[Candidate], Any] | None = None  # decided, not applied yet

    @property
    def period(self) -> int | None:
        """The fixed segment length, or None when a boundary rule ends segments."""
        return self.decoder.rule.budget(self.request.config) if isinstance(self.decoder.rule, FixedHorizon) else None


class _RewardWorker:
    """One thread per reward model: its calls run one at a time, beside the policy."""

    def __init__(self, name: str):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stars-reward-{name}")

    def submit(self, fn: Callable[[], Any]) -> Future:
        return self.executor.submit(fn)

    def close(self) -> None:
        self.executor.shutdown(wait=False)


@dataclass
class _Pending:
    future: Future
    kind: str  # start | decide | pick | release
    jobs: list[_Job]
    parents: list[_Parent]
    items: list[tuple[RequestState, list[Candidate]]] = field(default_factory=list)


@dataclass
class HeartbeatStats:
    """What the heartbeat rule costs: heartbeats, reward calls and idle row-steps."""

    heartbeats: int = 0
    reward_calls: int = 0
    row_steps: int = 0  # rows x steps decoded
    live_row_steps: int = 0  # of those, rows that produced a token

    @property
    def idle_fraction(self) -> float:
        return 0.0 if not self.row_steps else 1.0 - self.live_row_steps / self.row_steps


class SharedBatch:
    """The one batch of a policy: jobs of every strategy, horizon and reward (see the module doc).

    It is a scheduler group (`admit`, `step`, `evict`, `fail_all`, `close`, ...). `released`, when
    given, is a context manager under which the engine waits for reward verdicts (the scheduler
    lets go of the policy lock there)."""

    def __init__(
        self,
        policy: PolicyBackend,
        *,
        heartbeat: str = "next",
        max_chunk: int = 16,
        released: Callable[[], AbstractContextManager[None]] | None = None,
        stats: HeartbeatStats | None = None,
    ):
        if heartbeat not in HEARTBEATS:
            raise ValueError(f"heartbeat must be one of {', '.join(HEARTBEATS)}, not {heartbeat!r}")
        self.policy = policy
        self.heartbeat = heartbeat
        self.max_chunk = max_chunk
        self.released = released or nullcontext
        self.stats = stats if stats is not None else HeartbeatStats()
        self.batch: PolicyBatch | None = None
        self.owners: list[_Job] = []  # the job of every batch row (a job's rows are contiguous)
        self.jobs: list[_Job] = []
        self.parents: list[_Parent] = []
        self.pending: list[_Pending] = []
        self.workers: dict[Any, _RewardWorker] = {}
        self.clock = 0  # decode steps run so far
        self.advance_seconds = 0.0  # how long the last advance took (for the waiting rule)
        self.evicted_events: list[Event] = []  # events of verdicts applied while evicting
        self.step_events: list[Event] = []  # of the heartbeat in progress (see `step`)
        self.members: dict[int, RequestState] = {}  # admitted requests whose end is not reported yet
        self.filters: dict[type, ConstraintFilter] = {}  # validity judges (policies that cannot mask)

    # ------------------------------------------------------------------ group protocol
    @property
    def empty(self) -> bool:
        return not self.jobs and not self.parents and not self.pending

    @property
    def rows(self) -> int:
        return len(self.owners)

    @property
    def requests(self) -> list[RequestState]:
        return [j.request for j in self.jobs if j.parent is None] + [p.request for p in self.parents]

    def accepts_newcomers(self) -> bool:
        return self.batch is None or self.batch.mergeable()

    def admit(self, requests: Sequence[RequestState]) -> list[Event]:
        """Prefill the requests' rows into the batch; they start decoding at the next heartbeat."""
        events: list[Event] = []
        new: list[_Job] = []
        for r in requests:
            origin: Origin = r.origin
            if r.done:
                events.append(FinishEvent(r, r.result()))
                continue
            if isinstance(origin.strategy, BestOfN):
                parent = _Parent(r, origin)
                samples = [RequestState.create(r.prepared, r.config, r.strategy, seed_offset=j) for j in range(r.rows)]
                sampler = origin.strategy.sampler
                parent.samples = [_Job(s, sampler, origin, self._judge_for(sampler), parent=parent) for s in samples]
                self.parents.append(parent)
                new.extend(parent.samples)
                continue
            decoder: SegmentedDecoder = origin.strategy
            if decoder.rule.boundary(r.config) is not None and not self.policy.supports_boundary:
                r.finish(
                    "error",
                    ConfigError(
                        f"strategy {decoder.name!r} ends segments by a next-token rule, which the policy "
                        f"backend of {self.policy.name} does not support; use strategy='stars' instead"
                    ),
                )
                events.append(FinishEvent(r, r.result()))
                continue
            new.append(_Job(r, decoder, origin, self._judge_for(decoder)))
        if not new:
            return events
        fresh = self.policy.open_batch(
            [j.request.prepared.token_ids + tuple(j.request.generated) for j in new],
            [j.request.rows for j in new],
            sampling_rows([j.request for j in new], constraint_compiler(self.policy, [j.request for j in new])),
        )
        if self.batch is None:
            self.batch = fresh
        else:
            self.batch.merge(fresh)
        self.owners.extend(j for j in new for _ in range(j.request.rows))
        self.jobs.extend(new)
        for r in (j.parent.request if j.parent else j.request for j in new):
            self.members[id(r)] = r
        self._start([j for j in new if j.parent is None])
        return events

    def step(self) -> list[Event]:
        """One heartbeat: apply the verdicts that came back, begin the next segments, advance the
        rows that are in a segment, and send the completed ones to their reward models.

        Events are gathered in `step_events` as they happen, so that if the heartbeat fails half
        way, `fail_all` / `evict` still deliver what it had already decided (a request that finished
        in it has left `jobs` and would otherwise never hear of its end)."""
        events = self.step_events = self._cancel()
        self._wait_for_verdicts()
        events += self._collect()
        events += self._relayout()
        self._begin_ready()
        decoding = [j for j in self.jobs if j.phase == "decoding"]
        if decoding and self.batch is not None:
            steps = self._heartbeat(decoding)
            started = time.perf_counter()
            before = self._live_counter()
            done = self.batch.advance(steps)
            self.advance_seconds = time.perf_counter() - started
            self.clock += steps
            self.stats.heartbeats += 1
            self.stats.row_steps += self.batch.num_rows * steps
            self.stats.live_row_steps += self._live_counter() - before
            self._park(done)
            self._judge([j for j in self.jobs if j.phase == "complete"])
        elif self.pending:
            with self.released():
                wait([p.future for p in self.pending], timeout=0.05, return_when=FIRST_COMPLETED)
        events += self._collect()
        events += self._relayout()
        if self.empty:
            self.close()
        self.step_events = []
        for event in events:
            if isinstance(event, FinishEvent):
                self.members.pop(id(event.request), None)
        return events

    def evict(self) -> list[RequestState]:
        """Empty the batch, keeping every request's accepted state (to re-admit it elsewhere):
        outstanding verdicts are applied first (their events wait in `evicted_events`)."""
        self._drain()
        events = self._taken_step_events() + self._settle_without_batch()
        requests = [r for r in self.requests if not r.done]
        self.evicted_events = events + [FinishEvent(r, r.result()) for r in self._untold(events) if r.done]
        self._release(self.requests)
        self._clear()
        return requests

    def fail_all(self, error: BaseException) -> list[Event]:
        events = self._taken_step_events()
        for r in self._untold(events):
            if not r.done:
                r.finish("error", error)
            events.append(FinishEvent(r, r.result()))
        self._release(self.requests)
        self._clear()
        return events

    def _taken_step_events(self) -> list[Event]:
        events, self.step_events = self.step_events, []
        return events

    def _untold(self, events: Sequence[Event]) -> list[RequestState]:
        """Admitted requests whose end neither an earlier heartbeat nor `events` reported."""
        told = {id(e.request) for e in events if isinstance(e, FinishEvent)}
        return [r for key, r in self.members.items() if key not in told]

    def close(self) -> None:
        if self.batch is not None:
            self.batch.free()
        self.batch = None
        for worker in self.workers.values():
            worker.close()
        self.workers = {}

    # ------------------------------------------------------------------ judges
    def _judge_for(self, decoder: SegmentedDecoder) -> Judge:
        """The decoder's judge; for a policy that cannot mask tokens while sampling, one
        `ConstraintFilter` per judge kind around it (constrained candidates that cannot become
        valid are rejected at their segment boundary; unconstrained ones pass through), shared by
        every job of that kind so that their reward calls stay batched."""
        if getattr(self.policy, "supports_constraints", False):
            return decoder.judge
        kind = type(decoder.judge)
        judge = self.filters.get(kind)
        if judge is None:
            judge = self.filters[kind] = ConstraintFilter(decoder.judge)
        return judge

    # ------------------------------------------------------------------ reward workers
    def _worker(self, origin: Origin) -> _RewardWorker:
        worker = self.workers.get(origin.reward_key)
        if worker is None:
            worker = self.workers[origin.reward_key] = _RewardWorker(getattr(origin.ctx.reward, "name", "reward"))
        return worker

    def _send(
        self,
        origin: Origin,
        kind: str,
        fn: Callable[[], Any],
        jobs: Sequence[_Job] = (),
        parents: Sequence[_Parent] = (),
        items: Sequence[tuple[RequestState, list[Candidate]]] = (),
    ) -> None:
        if kind != "release":
            self.stats.reward_calls += 1
        future = self._worker(origin).submit(fn)
        self.pending.append(_Pending(future, kind, list(jobs), list(parents), list(items)))

    def _start(self, jobs: list[_Job]) -> None:
        """Judges set up new requests (STARS scores R(prompt, "")) on the reward's worker.

        The rows do not wait for it: decoding needs nothing from the judge, and the reward's worker
        runs its calls in order, so this call is done before the request's first verdict is asked.
        A request's first segment thus decodes while its prompt is being scored."""
        for group in _grouped(jobs, lambda j: (j.origin.reward_key, _judge_kind(j.judge))).values():
            judge, ctx = group[0].judge, group[0].origin.ctx
            if type(_inner(judge)).start is NoJudge.start:
                continue
            requests = [j.request for j in group]
            self._send(group[0].origin, "start", lambda judge=judge, ctx=ctx, rs=requests: judge.start(ctx, rs), group)

    def _judge(self, jobs: list[_Job]) -> None:
        """Completed segments: one decide call per (reward model, judge) over all of them."""
        for group in _grouped(jobs, lambda j: (j.origin.reward_key, _judge_kind(j.judge))).values():
            items = [(j.request, self._candidates(j)) for j in group]
            judge, ctx = group[0].judge, group[0].origin.ctx
            for j in group:
                j.phase = "parked"
            if not _needs_reward(judge, items):
                decisions = judge.decide(ctx, items)
                for j, (_, candidates), decision in zip(group, items, decisions, strict=True):
                    j.verdict = (candidates, decision)
                continue

            def decide(judge=judge, ctx=ctx, items=items) -> list:
                return judge.decide(ctx, items)

            self._send(group[0].origin, "decide", decide, group, items=items)

    def _release(self, requests: Sequence[RequestState]) -> None:
        for r in requests:
            origin: Origin | None = getattr(r, "origin", None)
            if origin is not None:
                self._send(origin, "release", lambda ctx=origin.ctx, r=r: release(ctx, [r]))

    def _wait_for_verdicts(self) -> None:
        """Wait for pending verdicts while that costs less than parking their rows for another
        heartbeat: up to (parked rows / all rows) x the time of one advance."""
        waiting = [p for p in self.pending if p.kind == "decide" and not p.future.done()]
        if not waiting or not self.owners:
            return
        parked = sum(len(self._rows_of(j)) for p in waiting for j in p.jobs)
        if not any(j.phase in ("ready", "decoding") for j in self.jobs):
            return  # nothing else to run: `step` waits for the first verdict instead
        budget = self.advance_seconds * parked / len(self.owners)
        if budget > 0:
            with self.released():
                wait([p.future for p in waiting], timeout=budget)

    def _collect(self) -> list[Event]:
        """Take the results of finished reward calls (on the engine thread)."""
        events: list[Event] = []
        still = []
        for p in self.pending:
            if not p.future.done():
                still.append(p)
                continue
            error = p.future.exception()
            if p.kind == "release":
                continue
            if error is not None:  # the call itself broke: its requests fail, nobody else's
                for r in [j.request for j in p.jobs] + [q.request for q in p.parents]:
                    if not r.done:
                        r.finish("error", error)
                if p.kind == "decide":  # parked rows go free; a failed start's rows are dropped as done
                    for j in p.jobs:
                        j.phase = "ready"
            elif p.kind == "decide":
                for j, (_, candidates), decision in zip(p.jobs, p.items, p.future.result(), strict=True):
                    j.verdict = (candidates, decision)
            elif p.kind == "pick":
                events += p.future.result()
            if p.kind == "pick":
                for q in p.parents:
                    if error is not None:
                        events.append(FinishEvent(q.request, q.request.result()))
                    self.parents.remove(q)
                    self._release([q.request])
        self.pending = still
        return events

    def _drain(self) -> None:
        if self.pending:
            with self.released():
                wait([p.future for p in self.pending])
        self._collect()

    def _settle_without_batch(self) -> list[Event]:
        """Apply the verdicts to the requests only (the batch is being dropped): accepted segments
        join their request's tokens, rejected ones are simply not kept."""
        events: list[Event] = []
        for j in self.jobs:
            if j.verdict is None:
                continue
            (candidates, decision), j.verdict = j.verdict, None
            r = j.request
            if not r.done:
                r.rows = j.decoder.row_count(r, j.judge)
                if decision.candidate is not None:
                    segment = r.accept(
                        decision.candidate,
                        threshold=decision.threshold,
                        forced=decision.forced,
                        rejections=decision.rejections,
                    )
                    if j.parent is None:
                        events.append(SegmentEvent(r, segment))
            for c in candidates:
                c.row = -1
            if r.done and j.parent is None:
                events.append(FinishEvent(r, r.result()))
        return events

    # ------------------------------------------------------------------ segments
    def _rows_of(self, job: _Job) -> list[int]:
        return [row for row, owner in enumerate(self.owners) if owner is job]

    def _begin_ready(self) -> None:
        if self.batch is None:
            return
        if self.heartbeat == "longest" and any(j.phase == "decoding" for j in self.jobs):
            return  # lockstep rounds: a new segment waits until every row's segment ended
        rows, budgets, forced, boundaries = [], [], {}, {}
        for j in self.jobs:
            if j.phase != "ready" or j.request.done:
                continue
            r, rule, judge = j.request, j.decoder.rule, j.judge
            replay = judge.forced_tokens(r)
            budget = len(replay) if replay is not None else min(rule.budget(r.config), r.remaining)
            boundary: BoundaryRule | None = None if replay is not None else rule.boundary(r.config)
            for row in self._rows_of(j):
                rows.append(row)
                budgets.append(budget)
                if replay is not None:
                    forced[row] = replay
                elif boundary is not None:
                    boundaries[row] = boundary
            j.phase, j.budget, j.begun, j.forced, j.done = "decoding", budget, self.clock, replay is not None, {}
        self.batch.begin(rows, budgets, forced, boundaries)

    def _heartbeat(self, decoding: list[_Job]) -> int:
        """Q: how many steps this heartbeat decodes (see the module doc)."""
        return heartbeat_steps(
            self.heartbeat,
            left=[j.budget - (self.clock - j.begun) for j in decoding],
            fixed=[j.period is not None or j.forced for j in decoding],
            periods=[j.period for j in decoding if j.period is not None],
            max_chunk=self.max_chunk,
        )

    def _live_counter(self) -> int:
        return int(getattr(self.batch, "live_row_steps", 0))

    def _park(self, done: list[SegmentDone]) -> None:
        """Record finished segments; a job whose rows all finished waits for its verdict."""
        for d in done:
            job = self.owners[d.row]
            rows = self._rows_of(job)
            if job.phase != "decoding":
                continue
            job.done[rows.index(d.row)] = d
            if d.error is not None and not job.request.done:
                job.request.finish("error", d.error)
            if len(job.done) == len(rows):
                job.phase = "complete"

    def _candidates(self, job: _Job) -> list[Candidate]:
        r = job.request
        r.stats.rounds += 1
        candidates = []
        if job.forced or r.done:
            return candidates
        for local in range(len(job.done)):
            d = job.done[local]
            complete = True if d.complete is None else d.complete
            candidate = candidate_of(self.policy, r, d.tokens, d.hit_eos, complete)
            candidate.row = local
            candidates.append(candidate)
            r.stats.sampled_tokens += len(d.tokens)
        return candidates

    def _relayout(self) -> list[Event]:
        """Apply the verdicts: accepted candidates copied over their request's rows, rejected
        segments rolled back, finished requests' rows dropped; one `select_rows` for the batch."""
        events: list[Event] = []
        if self.batch is None:
            return events
        rollback: list[int] = []
        source: list[int] = []
        owners: list[_Job] = []
        finished: list[_Job] = []
        for j in _unique(self.owners):
            rows = self._rows_of(j)
            r = j.request
            wanted = rows
            if j.verdict is not None:
                candidates, decision = j.verdict
                j.verdict = None
                j.phase = "ready"
                chosen = decision.candidate
                # the winner's row, read before the round's candidates forget their rows (one from
                # an earlier round has none: it was replayed, and the job's rows are all alike)
                winner = chosen.row if chosen is not None and chosen.row >= 0 else 0
                for c in candidates:
                    c.row = -1  # its round is over; only its tokens can come back (replay)
                if not r.done:
                    count = j.decoder.row_count(r, j.judge)
                    if chosen is None:
                        rollback.extend(rows)
                        wanted = rows if count == len(rows) else [rows[0]] * count
                    else:
                        segment = r.accept(
                            chosen, threshold=decision.threshold, forced=decision.forced, rejections=decision.rejections
                        )
                        if j.parent is None:
                            events.append(SegmentEvent(r, segment))
                        wanted = [rows[winner]] * count
                    r.rows = count
            if r.done and j.phase != "parked":
                finished.append(j)
                continue
            source.extend(wanted)
            owners.extend(j for _ in wanted)
        if rollback:
            self.batch.rollback(rollback)
        for j in finished:
            self.jobs.remove(j)
            events += self._finish(j)
        if source != list(range(self.batch.num_rows)):
            if source:
                self.batch.select_rows(source)
            else:
                self.batch.free()
                self.batch = None
        self.owners = owners
        if self.batch is not None and self.owners and not any(j.phase == "decoding" for j in self.jobs):
            self.batch.compact()
        return events

    def _finish(self, job: _Job) -> list[Event]:
        r = job.request
        if job.parent is None:
            self._release([r])
            return [FinishEvent(r, r.result())]
        parent = job.parent
        if parent.picking or not all(s.request.done for s in parent.samples):
            return []
        parent.picking = True
        samples = [s.request for s in parent.samples]
        origin = parent.origin

        def pick(ctx=origin.ctx, parent=parent.request, samples=samples) -> list[Event]:
            return pick_best(ctx, parent, samples)

        if parent.request.cancelled or any(s.finish_reason == "cancelled" for s in samples):
            events = pick()
            self.parents.remove(parent)
            self._release([parent.request])
            return events
        self._send(origin, "pick", pick, parents=[parent])
        return []

    def _cancel(self) -> list[Event]:
        for parent in self.parents:
            if parent.request.cancelled:
                for s in parent.samples:
                    s.request.cancelled = True
        for j in self.jobs:
            if j.request.cancelled and not j.request.done:
                j.request.finish("cancelled")
        return []

    def _clear(self) -> None:
        self.close()
        self.owners, self.jobs, self.parents, self.pending = [], [], [], []
        self.members = {}


def _inner(judge: Any) -> Any:
    """The judge a `ConstraintFilter` wraps (the judge itself otherwise)."""
    return judge.inner if isinstance(judge, ConstraintFilter) else judge


def _judge_kind(judge: Any) -> tuple[type, type]:
    """Jobs whose judges have equal kinds are decided in one call (judges keep per-request state
    on the request, so one judge of a kind decides for all)."""
    return type(judge), type(_inner(judge))


def _needs_reward(judge: Any, items: Sequence[tuple[RequestState, list[Candidate]]]) -> bool:
    judge = _inner(judge)
    if isinstance(judge, FinalScoreJudge):
        return any(c.finish is not None for _, candidates in items for c in candidates)
    return not isinstance(judge, NoJudge)


def _grouped(jobs: Sequence[_Job], key: Callable[[_Job], Any]) -> dict[Any, list[_Job]]:
    groups: dict[Any, list[_Job]] = {}
    for j in jobs:
        groups.setdefault(key(j), []).append(j)
    return groups


def _unique(owners: Sequence[_Job]) -> Iterator[_Job]:
    seen: set[int] = set()
    for j in owners:
        if id(j) not in seen:
            seen.add(id(j))
            yield j


__all__ = ["HEARTBEATS", "HeartbeatStats", "Origin", "SharedBatch", "shares_batch"]
