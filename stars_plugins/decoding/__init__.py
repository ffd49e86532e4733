"""Decoding strategies on one interface: STARS and the baselines it is compared against.

A strategy turns prepared prompts into `RequestState`s (`requests`) and opens *groups*: lockstep
batches that admit requests between rounds and advance one round per `step()`, returning
`SegmentEvent`s as segments are accepted and a `FinishEvent` per finished request. Requests whose
`group_key` (and reward model) match can share a group.

Most strategies are a segment rule (`rules.py`) plus a judge (`judges.py`) run by the round loop
in `segmented.py`; register a new one with `register_strategy(name, factory)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from stars_plugins.config import StarsConfig, set_strategy_check
from stars_plugins.decoding.best_of_n import BestOfN
from stars_plugins.decoding.judges import FinalScoreJudge, ThresholdJudge
from stars_plugins.decoding.rules import EntropyBoundary, FixedHorizon
from stars_plugins.decoding.scoring import DecodeContext
from stars_plugins.decoding.segmented import SegmentedDecoder
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


_registry: dict[str, Callable[[], Strategy]] = {
    # STARS: fixed K-token segments, reward-thresholded, N candidates in parallel.
    "stars": lambda: SegmentedDecoder("stars", FixedHorizon(), ThresholdJudge()),
    # Plain sampling: segments of K only for streaming, every segment accepted, the final response scored.
    "vanilla": lambda: SegmentedDecoder("vanilla", FixedHorizon(), FinalScoreJudge(), candidates=lambda c: 1),
    "best_of_n": BestOfN,
    # CARDS-style: segments end where next-token entropy reaches a threshold (min/max length);
    # a batch round lasts until its longest segment ends.
    "cards": lambda: SegmentedDecoder("cards", EntropyBoundary(), ThresholdJudge()),
}


def register_strategy(name: str, factory: Callable[[], Strategy], *, replace: bool = False) -> None:
    if name in _registry and not replace:
        raise ValueError(f"a strategy named {name!r} is already registered; pass replace=True to override it")
    _registry[name] = factory


def available_strategies() -> tuple[str, ...]:
    return tuple(_registry)


def strategy_problem(name: str) -> str | None:
    """What is wrong with a strategy name (None: it is registered)."""
    if name in _registry:
        return None
    return f"unknown strategy {name!r}; available: {', '.join(_registry)}"


def check_strategy(name: str) -> str:
    """`name` if a strategy is registered under it, else `UnknownStrategyError` (a `ConfigError`)
    with the text `StarsConfig` validation gives."""
    problem = strategy_problem(name)
    if problem:
        raise UnknownStrategyError(f"invalid StarsConfig: strategy={name!r}: {problem}")
    return name


# StarsConfig checks strategy names at construction through this hook (config.py cannot import
# the registry: the registry's strategies import config).
set_strategy_check(strategy_problem)


def get_strategy(name: str) -> Strategy:
    return _registry[check_strategy(name)]()


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
    "check_strategy",
    "get_strategy",
    "register_strategy",
]
