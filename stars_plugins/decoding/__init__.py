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

from stars_plugins.config import STRATEGY_SETTINGS, StarsConfig, StrategyFacts, set_strategy_lookup
from stars_plugins.decoding.best_of_n import BestOfN
from stars_plugins.decoding.judges import FinalScoreJudge, ThresholdJudge
from stars_plugins.decoding.rules import EntropyBoundary, FixedHorizon
from stars_plugins.decoding.scoring import DecodeContext
from stars_plugins.decoding.segmented import SegmentedDecoder
from stars_plugins.decoding.state import Event, FinishEvent, RequestState, SegmentEvent
from stars_plugins.errors import UnknownStrategyError


class Group(Protocol):
    """A lockstep batch of requests that advances one round per `step()`."""

    @property
    def empty(self) -> bool: ...

    @property
    def rows(self) -> int: ...

    @property
    def requests(self) -> list[RequestState]: ...

    def admit(self, requests: Sequence[RequestState]) -> list[Event]: ...

    def step(self) -> list[Event]: ...

    def accepts_newcomers(self) -> bool: ...

    def evict(self) -> list[RequestState]: ...

    def fail_all(self, error: BaseException) -> list[Event]: ...

    def close(self) -> None: ...


class Strategy(Protocol):
    name: str
    settings: frozenset[str]  # which of `config.STRATEGY_SETTINGS` it reads (the others warn when set)
    rejects: bool  # may reject a segment and resample it from the same prefix

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


_facts: dict[str, tuple[Callable[[], Strategy], StrategyFacts]] = {}


def strategy_facts(name: str) -> StrategyFacts | str:
    """What config validation needs to know about a registered strategy, or what is wrong with the name."""
    problem = strategy_problem(name)
    if problem:
        return problem
    factory = _registry[name]
    cached = _facts.get(name)
    if cached is None or cached[0] is not factory:  # (re-)registered: ask a fresh instance
        strategy = factory()
        settings = getattr(strategy, "settings", STRATEGY_SETTINGS)  # undeclared: assume it reads all
        cached = _facts[name] = (factory, StrategyFacts(frozenset(settings), bool(getattr(strategy, "rejects", False))))
    return cached[1]


def check_strategy(name: str) -> str:
    """`name` if a strategy is registered under it, else `UnknownStrategyError` (a `ConfigError`)
    with the text `StarsConfig` validation gives."""
    problem = strategy_problem(name)
    if problem:
        raise UnknownStrategyError(f"invalid StarsConfig: strategy={name!r}: {problem}")
    return name


# StarsConfig checks strategy names and the settings a strategy reads at construction through this
# hook (config.py cannot import the registry: the registry's strategies import config).
set_strategy_lookup(strategy_facts)


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
