"""What a generation returns: the text, its reward, accepted segments and cost statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Why a request ended. eos: the policy's end-of-sequence token (under a constraint: where the
#: grammar can end); stop: a stop string, or a constrained output that is complete when the budget
#: ran out; length: max_new_tokens reached; constraint_incomplete: max_new_tokens reached before
#: the constrained output was complete (the text is a valid prefix, not a valid answer);
#: error / cancelled.
FinishReason = Literal["eos", "stop", "length", "constraint_incomplete", "error", "cancelled"]


@dataclass
class GenerationStats:
    """Cost of one request. Every field counts this request only, even inside a shared batch."""

    prompt_tokens: int = 0
    accepted_tokens: int = 0
    sampled_tokens: int = 0
    discarded_tokens: int = 0  # sampled - accepted: rejected segments, losing candidates, tails after EOS
    rejected_tokens: int = 0  # tokens of rejected candidates only: what rejections cost
    rounds: int = 0
    segments: int = 0
    rejections: int = 0
    forced_accepts: int = 0
    reward_calls: int = 0
    reward_tokens: int = 0  # reward-model tokens run for this request (a prefix cache keeps this flat per round)
    invalid_rewards: int = 0
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def discarded_per_rejection(self) -> float:
        """Tokens thrown away per rejected segment (at most the horizon K under STARS)."""
        return self.rejected_tokens / self.rejections if self.rejections else 0.0


@dataclass(frozen=True)
class Segment:
    """One accepted segment, as `StarsRuntime.stream` yields it.

    `text` is the new text this segment makes safe to show: the texts of a request's segments add
    up exactly to its final `GenerationResult.text`. A tail that could begin a stop string (or half
    of a multi-byte character) is held back until the next segment settles it.
    """

    index: int
    text: str
    token_ids: tuple[int, ...]
    reward: float | None
    threshold: float | None
    rejections: int
    forced: bool
    final: bool
    finish_reason: FinishReason | None = None


@dataclass
class GenerationResult:
    """The outcome of one request."""

    prompt: Any
    text: str
    token_ids: list[int]
    reward: float | None
    finish_reason: FinishReason
    strategy: str
    stats: GenerationStats = field(default_factory=GenerationStats)
    segments: list[Segment] = field(default_factory=list)
    error: BaseException | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "reward": self.reward,
            "finish_reason": self.finish_reason,
            "strategy": self.strategy,
            "stats": self.stats.as_dict(),
            "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
        }
