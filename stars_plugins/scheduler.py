"""One lockstep batch for many callers: the request scheduler behind every `StarsRuntime` call.

Each loaded policy gets one `Scheduler` and one engine thread. Callers (threads, asyncio tasks,
LangChain and LlamaIndex calls alike) submit requests and wait for their own events. The engine
keeps one *group* (a lockstep batch) per compatible set of requests: same strategy and segment rule
(horizon, or CARDS' entropy settings) and same reward model. Between rounds it admits waiting
requests into their group, so a request joins a running batch at the next segment boundary
(continuous batching at segment granularity).

Each round of a group runs in a worker thread that holds the *policy lock*: the policy model runs
in one thread at a time. While a group waits for its reward model, it lets go of the policy lock,
so the other groups' rounds go on: a slow reward function stalls only the requests that use it. A
reward object is called by one thread at a time (tokenizers and user functions need not be
thread-safe), so groups sharing one reward model still take turns at it.

Faults stay local: a reward model that raises for one request fails that request only (the decoder
re-scores each request alone), and so does a reward that raises `SystemExit` or
`KeyboardInterrupt` (as an `EngineError`); an out-of-memory error during a round splits the group
in two and retries both halves, re-prefilling their accepted tokens; any other error fails that
group's requests with it. In every case the engine keeps serving the next call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from stars_plugins.backends.protocol import PolicyBackend
from stars_plugins.decoding import Group, Strategy
from stars_plugins.decoding.engine import HEARTBEATS, HeartbeatStats, Origin, SharedBatch, shares_batch
from stars_plugins.decoding.scoring import DecodeContext
from stars_plugins.decoding.state import Event, FinishEvent, RequestState
from stars_plugins.errors import EngineError, RewardError
from stars_plugins.memory import Trimmer
from stars_plugins.rewards.base import reward_identity

_OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)} - {None}
)


SHARED = ("shared",)  # the group key of the policy's one shared batch


@dataclass
class _Submission:
    strategy: Strategy
    ctx: DecodeContext
    requests: list[RequestState]
    shared: bool = False  # runs as jobs of the policy's shared batch

    @property
    def key(self) -> tuple[Any, ...]:
        if self.shared:
            return SHARED
        return (*self.strategy.group_key(self.requests[0].config), reward_identity(self.ctx.reward))


@dataclass
class _Group:
    key: tuple[Any, ...]
    strategy: Strategy
    ctx: DecodeContext  # the submission's context (the group's state sees the reward through the policy lock)
    state: Group  # the strategy's group: SegmentedGroup or BestOfNGroup
    incoming: list[RequestState] = field(default_factory=list)  # admitted by the group's next run
    running: bool = False  # a worker thread owns `state` while this is set
    broken: bool = False  # its state failed beyond repair: dropped at the next cycle

    @property
    def idle_with_work(self) -> bool:
        return not self.running and not self.broken and (bool(self.incoming) or not self.state.empty)

    @property
    def rows(self) -> int:
        return self.state.rows + sum(r.rows for r in self.incoming)


@dataclass
class _Outcome:
    """What one run of a group produced, handed from its worker to the engine thread."""

    events: list[Event]
    stepped: bool = False
    retry: list[RequestState] = field(default_factory=list)  # out of memory: re-admit in smaller groups
    error: BaseException | None = None


class _PolicyLock:
    """The policy runs in one thread at a time; a group waiting for its reward lets go of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> _PolicyLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let go of the lock for the duration (if this thread holds it) and take it back after."""
        if self._owner != threading.get_ident():
            yield
            return
        self._owner = None
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._owner = threading.get_ident()


class _CallLock:
    """The lock that makes a reward object's calls take turns (weakly registered: see below)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


# By reward identity, held only by the groups using that reward: a reward (or a per-call function)
# that no group uses any more leaves no lock, and no reference to itself, behind.
_reward_locks: weakref.WeakValueDictionary[Any, _CallLock] = weakref.WeakValueDictionary()
_reward_locks_guard = threading.Lock()


def _reward_lock(reward: Any) -> _CallLock:
    with _reward_locks_guard:
        key = reward_identity(reward)
        lock = _reward_locks.get(key)
        if lock is None:
            lock = _reward_locks[key] = _CallLock()
        return lock


class _RewardOutsidePolicyLock:
    """A group's view of its reward model: calls run without the policy lock (other groups' rounds
    go on meanwhile) and one at a time per reward object. Everything else is the reward's own."""

    _CALLS = frozenset({"score", "score_keyed", "release"})

    def __init__(self, reward: Any, policy_lock: _PolicyLock):
        self._reward = reward
        self._policy_lock = policy_lock
        self._call_lock = _reward_lock(reward)

    def __getattr__(self, name: str) -> Any:
        if name in ("_reward", "_policy_lock", "_call_lock"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        value = getattr(self._reward, name)
        if name not in self._CALLS or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._policy_lock.released(), self._call_lock:
                try:
                    return value(*args, **kwargs)
                except Exception:
                    raise
                except BaseException as exc:  # SystemExit & co. must not end the engine thread
                    raise RewardError(
                        f"reward {getattr(self._reward, 'name', '?')!r} raised {type(exc).__name__}"
                        f"({exc}); a reward model should raise an Exception"
                    ) from exc

        return call

    def __repr__(self) -> str:
        return repr(self._reward)


class Scheduler:
    """Merges concurrent requests for one policy into shared lockstep batches.

    `max_batch_rows` caps the rows (requests x candidates) of one group: further compatible
    requests wait and join as rows free up. `max_wait` is how long an idle engine waits for more
    requests before it starts a batch, so that callers arriving together share their first round.
    """

    def __init__(self, policy: PolicyBackend, *, max_batch_rows: int = 64, max_wait: float = 0.01):
        self.policy = policy
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self.heartbeat = "next"  # the shared batch's heartbeat rule (decoding/engine.py)
        self.max_chunk = 16  # most decode steps between two heartbeats
        self.heartbeat_stats = HeartbeatStats()  # heartbeats, reward calls, idle row-steps (all batches)
        self._condition = threading.Condition()
        self._waiting: list[_Submission] = []  # submitted, not yet seen by the engine
        self._pending: list[_Submission] = []  # seen, waiting for room in a group (engine thread only)
        self._finished: list[tuple[_Group, _Outcome]] = []  # runs whose results the engine has not taken
        self._groups: list[_Group] = []
        self._policy_lock = _PolicyLock()
        self._thread: threading.Thread | None = None
        self.trimmer = Trimmer()  # gives freed memory back to the system when the load drops
        self.rounds = 0  # rounds run so far, all groups together (for tests and monitoring)

    def configure(
        self,
        *,
        max_batch_rows: int | None = None,
        max_wait: float | None = None,
        heartbeat: str | None = None,
        max_chunk: int | None = None,
        trim_memory: bool | None = None,
    ) -> None:
        """`trim_memory=False` stops giving freed memory back to the system when the load drops
        (see `stars_plugins.memory`; on by default unless STARS_MALLOC_TRIM=0)."""
        with self._condition:
            if trim_memory is not None:
                self.trimmer.enabled = trim_memory
            if heartbeat is not None:
                if heartbeat not in HEARTBEATS:
                    raise ValueError(f"heartbeat must be one of {', '.join(HEARTBEATS)}, not {heartbeat!r}")
                self.heartbeat = heartbeat
            if max_chunk is not None:
                if max_chunk < 1:
                    raise ValueError("max_chunk must be at least 1 step")
                self.max_chunk = max_chunk
            if max_batch_rows is not None:
                if max_batch_rows < 1:
                    raise ValueError("max_batch_rows must be at least 1")
                self.max_batch_rows = max_batch_rows
            if max_wait is not None:
                if max_wait < 0:
                    raise ValueError("max_wait must be >= 0 seconds")
                self.max_wait = max_wait

    # ------------------------------------------------------------------ callers
    def submit(
        self,
        strategy: Strategy,
        ctx: DecodeContext,
        requests: Sequence[RequestState],
        listener: Callable[[Event], None],
    ) -> None:
        """Queue `requests`; `listener` receives each of their events on the engine thread."""
        if not requests:
            return
        for request in requests:
            request.listener = listener
        shared = bool(getattr(self.policy, "per_row_clocks", False)) and shares_batch(strategy)
        if shared:
            origin = Origin(strategy, self._outside_lock(ctx), reward_identity(ctx.reward))
            for request in requests:
                request.origin = origin
        with self._condition:
            self._waiting.append(_Submission(strategy, ctx, list(requests), shared))
            self._ensure_thread()
            self._condition.notify_all()

    @property
    def busy(self) -> bool:
        with self._condition:
            return bool(self._waiting or self._pending or self._finished or self._groups)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=f"stars-engine-{self.policy.name}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ engine thread
    def _loop(self) -> None:
        while True:
            try:
                self._cycle()
            except BaseException as exc:  # a bug in the engine itself: fail what it holds, keep serving
                self._fail_held(exc)

    def _cycle(self) -> None:
        with self._condition:
            while not self._waiting and not self._finished:
                self._condition.wait()
            if not self._groups and not self._pending and self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait  # let callers arriving together batch up
                while (left := deadline - time.monotonic()) > 0:
                    self._condition.wait(left)
            waiting, self._waiting = self._waiting, []
            finished, self._finished = self._finished, []
        for group, outcome in finished:
            self._settle(group, outcome)
        self._groups = [g for g in self._groups if g.running or (not g.broken and (g.incoming or not g.state.empty))]
        self._pending = self._place(self._pending + waiting)
        for group in self._groups:
            if group.idle_with_work:
                group.running = True
                threading.Thread(
                    target=self._run, args=(group,), name=f"stars-group-{self.policy.name}", daemon=True
                ).start()
        self.trimmer.observe(self._rows_held())

    def _rows_held(self) -> int:
        """Rows in groups and waiting for room (engine thread)."""
        return sum(g.rows for g in self._groups) + sum(r.rows for s in self._pending for r in s.requests)

    def _place(self, waiting: list[_Submission]) -> list[_Submission]:
        """Assign waiting requests to idle groups with room for them; return those that must wait."""
        later = []
        for submission in waiting:
            cancelled = [r for r in submission.requests if r.cancelled and not r.done]
            for r in cancelled:
                r.finish("cancelled")
            _deliver([FinishEvent(r, r.result()) for r in cancelled])
            remaining = [r for r in submission.requests if not r.done]
            while remaining:
                group = self._group_for(submission, remaining[0].rows)
                if group is None:
                    later.append(_Submission(submission.strategy, submission.ctx, remaining, submission.shared))
                    break
                room = self.max_batch_rows - group.rows
                take = 0
                while take < len(remaining) and (remaining[take].rows <= room or group.rows == 0 == take):
                    room -= remaining[take].rows
                    take += 1
                group.incoming.extend(remaining[:take])
                remaining = remaining[take:]
        return later

    def _group_for(self, submission: _Submission, need: int) -> _Group | None:
        """An idle compatible group with room for the submission's next request, a new group if
        there is no compatible one, or None: compatible groups are full or in the middle of a
        round, so the request waits for the next round boundary."""
        key = submission.key
        same = [g for g in self._groups if g.key == key and not g.broken and (g.running or g.state.accepts_newcomers())]
        for group in same:
            if not group.running and (group.rows == 0 or group.rows + need <= self.max_batch_rows):
                return group
        if same:
            return None
        return self._open(key, submission.strategy, submission.ctx)

    def _outside_lock(self, ctx: DecodeContext) -> DecodeContext:
        return dataclasses.replace(ctx, reward=_RewardOutsidePolicyLock(ctx.reward, self._policy_lock))

    def _open(self, key: tuple[Any, ...], strategy: Strategy, ctx: DecodeContext) -> _Group:
        if key == SHARED:
            state: Group = SharedBatch(
                self.policy,
                heartbeat=self.heartbeat,
                max_chunk=self.max_chunk,
                released=self._policy_lock.released,
                stats=self.heartbeat_stats,
            )
        else:
            state = strategy.open_group(self._outside_lock(ctx))
        group = _Group(key, strategy, ctx, state)
        self._groups.append(group)
        return group

    def _settle(self, group: _Group, outcome: _Outcome) -> None:
        group.running = False
        self.rounds += outcome.stepped
        _deliver(outcome.events)
        if outcome.retry:
            self._retry(outcome.retry, group, outcome.error or RuntimeError("out of memory"))

    def _retry(self, requests: list[RequestState], like: _Group, error: BaseException) -> None:
        """Out of memory: retry the requests as two smaller groups (one alone fails with the error)."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(requests) <= 1:
            for r in requests:
                r.finish("error", error)
            _deliver([FinishEvent(r, r.result()) for r in requests])
            return
        half = len(requests) // 2
        for part in (requests[:half], requests[half:]):
            self._open(like.key, like.strategy, like.ctx).incoming.extend(part)

    def _fail_held(self, error: BaseException) -> None:
        failure = _as_exception(error)
        with self._condition:
            held = [r for s in self._waiting + self._pending for r in s.requests]
            self._waiting, self._pending = [], []
            idle = [g for g in self._groups if not g.running]
            self._groups = [g for g in self._groups if g.running]
        held += [r for g in idle for r in (*g.incoming, *g.state.requests)]
        for group in idle:
            with contextlib.suppress(Exception):  # freeing a group that is dropped anyway
                group.state.close()
        events = []
        for r in held:
            if not r.done:
                r.finish("error", failure)
                events.append(FinishEvent(r, r.result()))
        _deliver(events)

    # ------------------------------------------------------------------ worker threads
    def _run(self, group: _Group) -> None:
        """One run of a group in its own thread: admit its newcomers, then advance it one round."""
        try:
            outcome = self._advance(group)
        except BaseException as exc:  # the group itself is broken: fail its requests, drop it
            failure = _as_exception(exc)
            group.broken = True
            try:
                held = list(group.state.requests)
            except BaseException:
                held = []
            requests = [r for r in (*group.incoming, *held) if not r.done]
            group.incoming = []
            for r in requests:
                r.finish("error", failure)
            outcome = _Outcome([FinishEvent(r, r.result()) for r in requests])
        with self._condition:
            self._finished.append((group, outcome))
            self._condition.notify_all()

    def _advance(self, group: _Group) -> _Outcome:
        newcomers, group.incoming = group.incoming, []
        events: list[Event] = []
        with self._policy_lock:
            if newcomers:
                try:
                    events += group.state.admit(newcomers)
                except _OOM_ERRORS as exc:
                    return _Outcome(events, retry=[r for r in newcomers if not r.done], error=exc)
                except BaseException as exc:  # a failed prefill fails these requests only
                    failure = _as_exception(exc)
                    for r in newcomers:
                        if not r.done:
                            r.finish("error", failure)
                            events.append(FinishEvent(r, r.result()))
            if group.state.empty:
                return _Outcome(events)
            try:
                events += group.state.step()
            except _OOM_ERRORS as exc:
                retry = group.state.evict()
                events += getattr(group.state, "evicted_events", [])
                return _Outcome(events, stepped=True, retry=retry, error=exc)
            except BaseException as exc:  # one group's failure must not stop the engine
                events += group.state.fail_all(_as_exception(exc))
            return _Outcome(events, stepped=True)


def _as_exception(error: BaseException) -> Exception:
    """The error a caller receives: the exception itself, or for SystemExit, KeyboardInterrupt and
    other BaseExceptions an `EngineError` that names it."""
    if isinstance(error, Exception):
        return error
    failure = EngineError(
        f"the decoding engine caught {type(error).__name__}({error}) while running this request; the "
        "request failed and the engine keeps serving. Rewards and policies should raise an Exception."
    )
    failure.__cause__ = error
    return failure


def _deliver(events: Sequence[Event]) -> None:
    for event in events:
        listener = event.request.listener
        if listener is None:
            continue
        try:
            listener(event)
        except Exception:  # a listener whose caller has gone away: stop its request
            event.request.cancelled = True


_create_lock = threading.Lock()
_schedulers: dict[int, Scheduler] = {}  # by id(policy); a scheduler holds its policy, so the id stays its own


def scheduler_for(policy: PolicyBackend) -> Scheduler:
    """The one scheduler of a loaded policy (created on first use)."""
    with _create_lock:
        scheduler = _schedulers.get(id(policy))
        if scheduler is None:
            scheduler = _schedulers[id(policy)] = Scheduler(policy)
        return scheduler
