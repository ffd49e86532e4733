"""Per-request state carried through the decoding loop, and the events the loop emits."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stars_plugins.backends.sampling import RowSampling
from stars_plugins.config import StarsConfig
from stars_plugins.constraints.rows import RowGrammar
from stars_plugins.prompts import PreparedPrompt
from stars_plugins.results import FinishReason, GenerationResult, GenerationStats, Segment
from stars_plugins.tools.parsers import parse_tool_output

_keys = itertools.count()


@dataclass
class Candidate:
    """One sampled continuation of a request's accepted prefix."""

    token_ids: list[int]  # what enters the response (EOS excluded, cut at a stop string)
    text: str  # the whole response if this candidate is accepted
    finish: FinishReason | None  # set when accepting it ends the request
    sampled: int  # tokens drawn for it, EOS included
    reward: float = float("nan")
    row: int = -1  # batch row in the round it was sampled; -1 once that round is over


@dataclass
class RequestState:
    prepared: PreparedPrompt
    config: StarsConfig
    strategy: str
    seed: int
    rows: int = 1  # batch rows (candidates) this request occupies
    generated: list[int] = field(default_factory=list)
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)
    reward: float | None = None
    emitted: int = 0  # characters of `text` already handed out in segments
    judge_state: Any = None  # owned by the strategy's judge (thresholds, candidates seen, ...)
    key: int = field(default_factory=lambda: next(_keys))  # stable id, passed to keyed reward models
    finish_reason: FinishReason | None = None
    error: BaseException | None = None
    cancelled: bool = False
    listener: Callable[[Any], None] | None = None  # receives this request's events (the scheduler sets it)
    origin: Any = None  # what it was submitted with, for the shared batch (the scheduler sets it)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.stats.prompt_tokens = len(self.prepared.token_ids)

    @classmethod
    def create(
        cls, prepared: PreparedPrompt, config: StarsConfig, strategy: str, *, rows: int = 1, seed_offset: int = 0
    ) -> RequestState:
        base = config.seed if config.seed is not None else int.from_bytes(os.urandom(7), "little")
        return cls(prepared, config, strategy, seed=base + seed_offset, rows=rows)

    # ---------------------------------------------------------------- queries
    @property
    def index(self) -> int:
        return self.prepared.index

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def remaining(self) -> int:
        return self.config.max_new_tokens - len(self.generated)

    # ---------------------------------------------------------------- transitions
    def accept(self, candidate: Candidate, *, threshold: float | None, forced: bool, rejections: int = 0) -> Segment:
        self.generated.extend(candidate.token_ids)
        self.text = candidate.text
        self.reward = None if candidate.reward != candidate.reward else candidate.reward  # NaN -> None
        if candidate.finish is None and self.remaining <= 0:
            candidate.finish = "length"
        self.stats.accepted_tokens = len(self.generated)
        self.stats.segments += 1
        self.stats.forced_accepts += int(forced)
        final = candidate.finish is not None
        end = len(self.text) if final else max(self.emitted, stable_end(self.text, self.config.stop))
        segment = Segment(
            index=len(self.segments),
            text=self.text[self.emitted : end],
            token_ids=tuple(candidate.token_ids),
            reward=self.reward,
            threshold=threshold,
            rejections=rejections,
            forced=forced,
            final=final,
            finish_reason=candidate.finish,
        )
        self.emitted = end
        self.segments.append(segment)
        if candidate.finish is not None:
            self.finish(candidate.finish)
        return segment

    def finish(self, reason: FinishReason, error: BaseException | None = None) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason
            self.error = error
            self.stats.discarded_tokens = self.stats.sampled_tokens - self.stats.accepted_tokens
            self.stats.wall_seconds = time.perf_counter() - self.started

    def result(self) -> GenerationResult:
        result = GenerationResult(
            prompt=self.prepared.original,
            text=self.text,
            token_ids=list(self.generated),
            reward=self.reward,
            finish_reason=self.finish_reason or "cancelled",
            strategy=self.strategy,
            stats=self.stats,
            segments=list(self.segments),
            error=self.error,
        )
        if self.prepared.tool_parser is not None:
            attach_tool_calls(result, self.config, self.prepared, self.seed)
        return result


def attach_tool_calls(result: GenerationResult, config: StarsConfig, prepared: PreparedPrompt, seed: int) -> None:
    """Read the tool calls of a finished answer (docs/tools.md): valid calls, invalid ones with
    their raw text, the content outside calls; finish_reason "tool_calls" when valid calls end it."""
    parsed = parse_tool_output(
        prepared.response_prefix + result.text,
        config.tools,
        prepared.tool_parser or "hermes",
        seed=seed,
        parallel_tool_calls=config.parallel_tool_calls,
    )
    result.response_prefix = prepared.response_prefix
    result.content = parsed.content
    result.tool_calls = list(parsed.tool_calls)
    result.invalid_tool_calls = list(parsed.invalid_tool_calls)
    if parsed.tool_calls and result.finish_reason in ("eos", "stop"):
        result.finish_reason = "tool_calls"


def sampling_rows(
    requests: Sequence[RequestState], compile_constraint: Callable[[Any], Any] | None = None
) -> list[RowSampling]:
    """One `RowSampling` per batch row of `requests` (request by request, `rows` each): the only
    place where a request's settings become its rows' sampling. A constrained request's rows carry
    its grammar compiled by `compile_constraint`, resuming after the tokens it already accepted
    (None: the policy cannot mask, and the rows sample unconstrained; see decoding/validity.py)."""
    rows = []
    for r in requests:
        c = r.config
        grammar = None
        if c.constraint is not None and compile_constraint is not None:
            grammar = RowGrammar(
                compile_constraint(c.constraint), tuple(r.generated), max_rollback=c.max_new_tokens, key=c.constraint
            )
        # stream = candidate index: a request's rows draw different numbers, the same in any batch
        rows.extend(
            RowSampling(c.temperature, c.top_k, c.top_p, seed=r.seed, stream=i, grammar=grammar) for i in range(r.rows)
        )
    return rows


def stable_end(text: str, stops: tuple[str, ...]) -> int:
    """How much of an unfinished response can be shown without ever taking it back: not a trailing
    half of a multi-byte character (decoded as U+FFFD), not a tail that may begin a stop string."""
    end = len(text.rstrip("\ufffd"))
    longest = max((len(s) for s in stops), default=0)
    for start in range(max(0, end - longest + 1), end):
        tail = text[start:end]
        if any(stop.startswith(tail) for stop in stops):
            return start
    return end


@dataclass(frozen=True)
class SegmentEvent:
    """A segment was accepted for `request`."""

    request: RequestState
    segment: Segment


@dataclass(frozen=True)
class FinishEvent:
    """`request` finished (for any reason, errors and cancellation included)."""

    request: RequestState
    result: GenerationResult


Event = SegmentEvent | FinishEvent
