"""Decoding strategies on one interface: STARS and the baselines it is compared against.

A strategy turns prepared prompts into `RequestState`s (`requests`) and opens *groups*: lockstep
batches that admit requests between rounds and advance one round per `step()`, returning
`SegmentEvent`s as segments are accepted and a `FinishEvent` per finished request. Requests whose
`group_key` (and reward model) match can share a group. `run(ctx, requests)` drives one group to
completion without the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from stars_plugins.config import StarsConfig
from stars_plugins.decoding.best_of_n import BestOfN
from stars_plugins.decoding.segmented import DecodeContext, SegmentedDecoder, entropy_boundary, fixed_horizon
from stars_plugins.decoding.state import Event, FinishEvent, RequestState, SegmentEvent
from stars_plugins.errors import UnknownStrategyError


class Group(Protocol):
    empty: bool
    rows: int

    def admit(self, requests: Sequence[RequestState]) -> list[Event]: ...

    def step(self) -> list[Event]: ...

    def accepts_newcomers(self) -> bool: ...

    def evict(self) -> list[RequestState]: ...

    def fail_all(self, error: BaseException) -> list[Event]: ...

    def close(self) -> None: ...


class Strategy(Protocol):
    name: str

    def requests(self, prepared: Sequence, config: StarsConfig) -> list[RequestState]: ...

    def group_key(self, config: StarsConfig) -> tuple[Any, ...]: ...

    def open_group(self, ctx: DecodeContext) -> Group: ...

    def run(self, ctx: DecodeContext, requests: list[RequestState]) -> Iterator[Event]: ...


_registry: dict[str, Callable[[], Strategy]] = {
    # STARS: fixed K-token segments, reward-thresholded, N candidates in parallel.
    "stars": lambda: SegmentedDecoder("stars", judged=True, segment_budget=fixed_horizon),
    # Plain sampling: the same batch, segments of K only for streaming, every segment accepted.
    "vanilla": lambda: SegmentedDecoder(
        "vanilla", judged=False, segment_budget=fixed_horizon, candidates=lambda c: 1
    ),
    "best_of_n": BestOfN,
    # CARDS-style: segments end where next-token entropy reaches a threshold (min/max length);
    # a batch round lasts until its longest segment ends.
    "cards": lambda: SegmentedDecoder(
        "cards", judged=True, segment_budget=lambda c: c.max_segment_tokens, boundary=entropy_boundary
    ),
}


def register_strategy(name: str, factory: Callable[[], Strategy], *, replace: bool = False) -> None:
    if name in _registry and not replace:
        raise ValueError(f"a strategy named {name!r} is already registered; pass replace=True to override it")
    _registry[name] = factory


def available_strategies() -> tuple[str, ...]:
    return tuple(_registry)


def get_strategy(name: str) -> Strategy:
    try:
        return _registry[name]()
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; available: {', '.join(_registry)}"
        ) from None


__all__ = [
    "DecodeContext",
    "Event",
    "FinishEvent",
    "Group",
    "RequestState",
    "SegmentEvent",
    "SegmentedDecoder",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]
