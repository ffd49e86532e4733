"""One lockstep batch for many callers: the request scheduler behind every `StarsRuntime` call.

Each loaded policy gets one `Scheduler` and one engine thread, the only thread that runs the model.
Callers (threads, asyncio tasks, LangChain and LlamaIndex calls alike) submit requests and wait for
their own events. The engine keeps one *group* (a lockstep batch) per compatible set of requests:
same strategy and segment rule (horizon, or CARDS' entropy settings) and same reward model. Between
rounds it admits waiting requests into their group, so a request joins a running batch at the next
segment boundary (continuous batching at segment granularity), and it advances the groups round
robin. Cancelled requests leave at the next round; finished ones leave at once.

Faults stay local: a reward model that raises for one request fails that request only (the decoder
re-scores each request alone); an out-of-memory error during a round splits the group in two and
retries both halves, re-prefilling their accepted tokens; any other error fails that group's
requests with it and leaves the engine running for everyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stars_plugins.decoding.backend import PolicyBackend
from stars_plugins.decoding.scoring import DecodeContext
from stars_plugins.decoding.state import Event, FinishEvent, RequestState
from stars_plugins.rewards.base import reward_identity

_OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)} - {None}
)


@dataclass
class _Submission:
    strategy: Any
    ctx: DecodeContext
    requests: list[RequestState]

    @property
    def key(self) -> tuple[Any, ...]:
        return (*self.strategy.group_key(self.requests[0].config), reward_identity(self.ctx.reward))


@dataclass
class _Group:
    key: tuple[Any, ...]
    strategy: Any
    ctx: DecodeContext
    state: Any  # the strategy's group: SegmentedGroup or BestOfNGroup


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
        self._condition = threading.Condition()
        self._waiting: list[_Submission] = []
        self._groups: list[_Group] = []
        self._thread: threading.Thread | None = None
        self.rounds = 0  # rounds run so far, all groups together (for tests and monitoring)

    def configure(self, *, max_batch_rows: int | None = None, max_wait: float | None = None) -> None:
        with self._condition:
            if max_batch_rows is not None:
                if max_batch_rows < 1:
                    raise ValueError("max_batch_rows must be at least 1")
                self.max_batch_rows = max_batch_rows
            if max_wait is not None:
                if max_wait < 0:
                    raise ValueError("max_wait must be >= 0 seconds")
                self.max_wait = max_wait

    # ------------------------------------------------------------------ callers
    def submit(self, strategy: Any, ctx: DecodeContext, requests: Sequence[RequestState],
               listener: Callable[[Event], None]) -> None:
        """Queue `requests`; `listener` receives each of their events on the engine thread."""
        if not requests:
            return
        for request in requests:
            request.listener = listener
        with self._condition:
            self._waiting.append(_Submission(strategy, ctx, list(requests)))
            self._ensure_thread()
            self._condition.notify_all()

    @property
    def busy(self) -> bool:
        with self._condition:
            return bool(self._waiting or self._groups)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=f"stars-engine-{self.policy.name}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ engine thread
    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._groups:
                    self._condition.wait()
                if not self._groups and self.max_wait > 0:
                    deadline = time.monotonic() + self.max_wait  # let callers arriving together batch up
                    while (left := deadline - time.monotonic()) > 0:
                        self._condition.wait(left)
                waiting, self._waiting = self._waiting, []
            leftover = self._admit(waiting)
            if leftover:
                with self._condition:
                    self._waiting[:0] = leftover
            for group in list(self._groups):
                self._step(group)
            self._groups = [g for g in self._groups if not g.state.empty]

    def _admit(self, waiting: list[_Submission]) -> list[_Submission]:
        """Place waiting requests in groups with room for them; return those that must wait."""
        later = []
        for submission in waiting:
            cancelled = [r for r in submission.requests if r.cancelled]
            for r in cancelled:
                r.finish("cancelled")
            _deliver([FinishEvent(r, r.result()) for r in cancelled])
            remaining = [r for r in submission.requests if not r.cancelled]
            while remaining:
                group = self._group_for(submission, remaining[0].rows)
                if group is None:
                    later.append(_Submission(submission.strategy, submission.ctx, remaining))
                    break
                room = self.max_batch_rows - group.state.rows
                take = 0
                while take < len(remaining) and (remaining[take].rows <= room or group.state.rows == 0 == take):
                    room -= remaining[take].rows
                    take += 1
                batch, remaining = remaining[:take], remaining[take:]
                try:
                    _deliver(group.state.admit(batch))
                except Exception as exc:  # a failed prefill fails these requests only
                    for r in batch:
                        r.finish("error", exc)
                    _deliver([FinishEvent(r, r.result()) for r in batch])
        return later

    def _group_for(self, submission: _Submission, need: int) -> _Group | None:
        """A compatible group with room for the submission's next request, a new group if there is
        no compatible one, or None: compatible groups are full, so the request waits."""
        key = submission.key
        same = [g for g in self._groups if g.key == key and g.state.accepts_newcomers()]
        for group in same:
            if group.state.rows + need <= self.max_batch_rows:
                return group
        if same:
            return None
        return self._open(key, submission.strategy, submission.ctx)

    def _open(self, key: tuple[Any, ...], strategy: Any, ctx: DecodeContext) -> _Group:
        group = _Group(key, strategy, ctx, strategy.open_group(ctx))
        self._groups.append(group)
        return group

    def _step(self, group: _Group) -> None:
        try:
            events = group.state.step()
        except _OOM_ERRORS as exc:
            self._split(group, exc)
            return
        except Exception as exc:  # one group's failure must not stop the engine
            events = group.state.fail_all(exc)
        self.rounds += 1
        _deliver(events)

    def _split(self, group: _Group, error: BaseException) -> None:
        """Out of memory: retry the group's requests as two smaller groups."""
        self._retry(group.state.evict(), group, error)

    def _retry(self, requests: list[RequestState], like: _Group, error: BaseException) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(requests) <= 1:
            for r in requests:
                r.finish("error", error)
            _deliver([FinishEvent(r, r.result()) for r in requests])
            return
        half = len(requests) // 2
        for part in (requests[:half], requests[half:]):
            smaller = self._open(like.key, like.strategy, like.ctx)
            try:
                _deliver(smaller.state.admit(part))
            except _OOM_ERRORS as exc:
                smaller.state.close()
                self._groups.remove(smaller)
                self._retry(part, like, exc)


def _deliver(events: Sequence[Event]) -> None:
    for event in events:
        listener = event.request.listener
        if listener is not None:
            listener(event)


_create_lock = threading.Lock()


def scheduler_for(policy: PolicyBackend) -> Scheduler:
    """The one scheduler of a loaded policy (created on first use)."""
    with _create_lock:
        scheduler = getattr(policy, "_scheduler", None)
        if scheduler is None:
            scheduler = policy._scheduler = Scheduler(policy)
        return scheduler
