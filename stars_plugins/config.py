"""`StarsConfig`: one validated, immutable object per request.

Loaded models are expensive and configurations are cheap: everything that may differ between two
chains sharing one policy (horizon, acceptance rule, sampling, stop strings, strategy) lives here,
never in the loaded model.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stars_plugins.constraints.spec import Constraint
from stars_plugins.errors import ConfigError, UnknownStrategyError
from stars_plugins.text import check_text
from stars_plugins.tools.parsers import get_tool_parser
from stars_plugins.tools.spec import ToolSpec, check_tool_choice, tool_choice_name, tool_specs

#: Settings that only some strategies read (every strategy reads the others: sampling, stopping,
#: prompts, max_new_tokens, seed). A strategy declares which of these it uses.
STRATEGY_SETTINGS = frozenset({
    "horizon", "num_candidates", "max_rejections", "max_adaptive_candidates", "alpha", "beta", "acceptance",
    "target_reward", "target_cap_quantile", "calibration_quantile", "entropy_threshold", "min_segment_tokens",
    "max_segment_tokens", "offer_other_tools",
})  # fmt: skip


@dataclass(frozen=True)
class StrategyFacts:
    """What config validation must know about a registered strategy."""

    settings: frozenset[str]  # which of STRATEGY_SETTINGS it reads
    rejects: bool  # may reject a segment and resample it from the same prefix


#: Installed by the strategy registry (`stars_plugins.decoding`) when it is imported: the facts of a
#: registered strategy, or what is wrong with the name. Validation asks it without importing the registry.
_strategy_lookup: Callable[[str], StrategyFacts | str] | None = None
_warned: set[tuple[str, ...]] = set()
_warned_lock = threading.Lock()


def set_strategy_lookup(lookup: Callable[[str], StrategyFacts | str]) -> None:
    global _strategy_lookup
    _strategy_lookup = lookup


def _warn_once(key: tuple[str, ...], message: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, UserWarning, stacklevel=_caller_level())


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_level() -> int:
    """The stack level of the first frame outside stars_plugins and pydantic: the warning points
    at the user's code that asked for these settings."""
    frame, level = sys._getframe(2), 2
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PACKAGE_DIR) or f"{os.sep}pydantic" in name):
            break
        frame, level = frame.f_back, level + 1
    return level


_INT_FIELDS = (
    "horizon",
    "num_candidates",
    "max_new_tokens",
    "max_rejections",
    "top_k",
    "seed",
    "min_segment_tokens",
    "max_segment_tokens",
)
_FLOAT_FIELDS = ("alpha", "beta", "target_reward", "calibration_quantile", "temperature", "top_p", "entropy_threshold")


def _type_name(value: Any) -> str:
    return "bytes (decode it to str first)" if isinstance(value, bytes | bytearray) else type(value).__name__


class StarsConfig(BaseModel):
    """Decoding settings for one request (or one chain).

    Invalid values fail at construction with a `ConfigError` naming the field and its allowed range.
    Use `config.updated(horizon=8)` to derive a validated copy.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    strategy: str = Field(
        "stars",
        description="Decoding strategy: stars, vanilla, best_of_n, cards or one added with register_strategy.",
    )

    # --- STARS segmentation -------------------------------------------------------------------
    horizon: int = Field(16, ge=1, le=1024, description="K: tokens per segment (the lockstep heartbeat).")
    num_candidates: int = Field(
        1,
        ge=1,
        le=64,
        description="N: candidates sampled in parallel per segment (best_of_n: whole responses).",
    )
    max_new_tokens: int = Field(128, ge=1, le=65536, description="Token budget of the response.")
    max_rejections: int = Field(
        20,
        ge=0,
        le=10000,
        description="Rejections of one segment after which the best candidate seen is accepted.",
    )
    max_adaptive_candidates: int = Field(
        4,
        ge=1,
        le=64,
        description="While a segment keeps being rejected, its candidates per round double from num_candidates "
        "up to this (back to num_candidates after an acceptance); num_candidates or less turns it off.",
    )

    # --- adaptive threshold -------------------------------------------------------------------
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the target in the initial threshold.")
    beta: float = Field(0.7, gt=0.0, le=100.0, description="Temperature of soft acceptance.")
    acceptance: Literal["soft", "hard"] = Field("soft", description="soft: probabilistic; hard: r >= tau.")
    target_reward: float | None = Field(
        None, description="r_target. None: the reward model's default, else calibrated on the first round."
    )
    target_cap_quantile: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Cap the target at this quantile of the rewards this request's own candidates have reached "
        "so far, so a prompt whose answers all score below the target is not resampled up to max_rejections on "
        "every segment (faster, but lower reward exactly where the policy answers badly). None (the default): "
        "the target stays fixed.",
    )
    calibration_quantile: float = Field(
        0.75, ge=0.0, le=1.0, description="Quantile of first-round rewards used when no target is known."
    )

    # --- sampling -----------------------------------------------------------------------------
    temperature: float = Field(1.0, ge=0.0, le=100.0, description="0 decodes greedily.")
    top_k: int = Field(40, ge=0, le=1_000_000, description="Keep the k most likely tokens; 0 keeps all.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1 keeps all.")
    seed: int | None = Field(None, ge=0, description="Makes sampling and soft acceptance reproducible.")

    # --- prompts and stopping -----------------------------------------------------------------
    stop: tuple[str, ...] = Field((), description="Stop strings: the text is cut before the first one.")
    apply_chat_template: bool = Field(True, description="Wrap plain prompts in the policy's chat template.")
    system_prompt: str | None = Field(None, description="System message used with the chat template.")
    truncate_prompt: bool = Field(False, description="Keep the last tokens of an over-long prompt instead of raising.")

    # --- tools (see docs/tools.md) ------------------------------------------------------------
    tools: tuple[ToolSpec, ...] = Field(
        (), description="Functions the model may call: ToolSpec objects or OpenAI tool dicts."
    )
    tool_choice: str = Field(
        "auto",
        description="auto (text or calls), none (text only), required (at least one call) or a bound function's name.",
    )
    tool_parser: str | None = Field(
        None, description="Tool-call format (hermes, llama3_json, mistral); None: read from the chat template."
    )
    parallel_tool_calls: bool = Field(True, description="Allow several tool calls in one answer.")
    offer_other_tools: bool = Field(
        False,
        description="STARS / CARDS, a required call among several tools: when no candidate of the call's first "
        "segment passes, the bound tools no candidate named are scored too, and one the reward prefers is called "
        "(docs/tools.md, 'Verified actions').",
    )

    # --- structured output --------------------------------------------------------------------
    constraint: Constraint | None = Field(
        None,
        description="Structured output: a Constraint (JSON Schema, JSON object, regex, choice, grammar) every "
        "sampled token must fit; see docs/structured.md.",
    )

    # --- CARDS-style uncertainty segmentation (strategy="cards") ------------------------------
    entropy_threshold: float = Field(
        3.0, gt=0.0, le=50.0, description="A segment ends when next-token entropy (nats) reaches this."
    )
    min_segment_tokens: int = Field(4, ge=1, le=1024, description="Shortest CARDS segment.")
    max_segment_tokens: int = Field(64, ge=1, le=1024, description="Longest CARDS segment.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            only_strategy = all(tuple(e["loc"]) == ("strategy",) for e in exc.errors())
            raise (UnknownStrategyError if only_strategy else ConfigError)(_describe(exc)) from None

    @field_validator("strategy")
    @classmethod
    def _registered_strategy(cls, value: str) -> str:
        facts = _strategy_lookup(value) if _strategy_lookup is not None else None
        if isinstance(facts, str):
            raise ValueError(facts)
        return value

    @field_validator(*_INT_FIELDS, mode="before")
    @classmethod
    def _strict_int(cls, value: Any) -> Any:
        # pydantic's lax mode turns True into 1 and 16.0 into 16; a setting that counts tokens or
        # candidates takes a whole number only, so a slip (a flag, a division result) is reported.
        if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
            return value if value is None else int(value)
        raise ValueError(f"must be a whole number (int), got {type(value).__name__}")

    @field_validator(*_FLOAT_FIELDS, mode="before")
    @classmethod
    def _real_number(cls, value: Any) -> Any:
        if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            return value
        raise ValueError(f"must be a number, got {type(value).__name__}")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_tuple(cls, value: Any) -> Any:
        # One rule: a single string is one stop string, a list or tuple of strings is several.
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
            raise ValueError(f"stop must be a string or a list of strings, got {_type_name(value)}")
        stops = tuple(value)
        wrong = next((s for s in stops if not isinstance(s, str)), None)
        if wrong is not None:
            raise ValueError(f"stop must be a string or a list of strings, got an item of type {_type_name(wrong)}")
        return stops

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must be non-empty")
        for s in value:
            check_text(s, "a stop string")
        return value

    @field_validator("constraint", mode="before")
    @classmethod
    def _a_constraint(cls, value: Any) -> Any:
        if value is None or isinstance(value, Constraint):
            return value
        if isinstance(value, Mapping) and "kind" in value:  # a model_dump() of a Constraint, read back
            fields = dict(value)
            fields["options"] = tuple(fields.get("options", ()))
            return Constraint(**fields)
        raise ValueError(
            f"must be a Constraint (Constraint.json_schema(...), .json_object(), .regex(...), .choice(...), "
            f".grammar(...)) or None, got {_type_name(value)}"
        )

    @field_validator("system_prompt")
    @classmethod
    def _valid_system_prompt(cls, value: str | None) -> str | None:
        if value is not None:
            check_text(value, "system_prompt")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_specs(cls, value: Any) -> Any:
        return tool_specs(value)

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        return tool_choice_name(value)

    @field_validator("tool_parser")
    @classmethod
    def _tool_parser(cls, value: str | None) -> str | None:
        if value is not None:
            get_tool_parser(value)
        return value

    @model_validator(mode="after")
    def _choice_among_tools(self) -> StarsConfig:
        check_tool_choice(self.tool_choice, self.tools)
        return self

    @field_validator("target_reward")
    @classmethod
    def _finite_target(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("target_reward must be a finite number or None")
        return value

    @model_validator(mode="after")
    def _segment_bounds(self) -> StarsConfig:
        if self.min_segment_tokens > self.max_segment_tokens:
            raise ValueError(
                f"min_segment_tokens ({self.min_segment_tokens}) must not exceed "
                f"max_segment_tokens ({self.max_segment_tokens})"
            )
        return self

    @model_validator(mode="after")
    def _settings_the_strategy_uses(self) -> StarsConfig:
        """Warn (once per process and strategy) about settings the strategy does not read, and
        about greedy decoding under a strategy that resamples (see docs/configuration.md)."""
        facts = _strategy_lookup(self.strategy) if _strategy_lookup is not None else None
        if not isinstance(facts, StrategyFacts):
            return self
        fields = type(self).model_fields
        ignored = sorted(f for f in STRATEGY_SETTINGS - facts.settings if getattr(self, f) != fields[f].default)
        if ignored:
            _warn_once(
                ("ignored", self.strategy, *ignored),
                f"strategy {self.strategy!r} does not use {', '.join(ignored)}; those settings have no effect with it",
            )
        parallel = "num_candidates" in facts.settings and self.num_candidates > 1
        if self.temperature == 0 and (facts.rejects or parallel):
            _warn_once(
                ("greedy", self.strategy),
                f"temperature=0 decodes greedily, so every candidate is the same text: strategy "
                f"{self.strategy!r} samples one candidate per segment and keeps it (scored, never "
                "resampled), i.e. greedy decoding. Use temperature > 0 (and seed= for repeatable "
                "output) for reward-guided decoding.",
            )
        return self

    def for_strategy(self, strategy: str, **changes: Any) -> StarsConfig:
        """This config under another strategy (plus `changes`), with the settings that strategy
        does not read put back to their defaults, so that comparing strategies with one config
        (a benchmark, say) raises no warning about them."""
        facts = _strategy_lookup(strategy) if _strategy_lookup is not None else None
        fields = type(self).model_fields
        reset = {}
        if isinstance(facts, StrategyFacts):
            reset = {f: fields[f].default for f in STRATEGY_SETTINGS - facts.settings}
        return self.updated(**{**reset, "strategy": strategy, **changes})

    def updated(self, **changes: Any) -> StarsConfig:
        """A validated copy with `changes` applied (unlike `model_copy`, which skips validation)."""
        if not changes:
            return self
        return StarsConfig(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})


def _bounds(field: str) -> str:
    info = StarsConfig.model_fields.get(field)
    if info is None:
        return ""
    low = high = None
    low_op, high_op = "<=", "<="
    for meta in info.metadata:
        if getattr(meta, "ge", None) is not None:
            low = meta.ge
        if getattr(meta, "gt", None) is not None:
            low, low_op = meta.gt, "<"
        if getattr(meta, "le", None) is not None:
            high = meta.le
        if getattr(meta, "lt", None) is not None:
            high, high_op = meta.lt, "<"
    if low is None and high is None:
        return ""
    parts = [f"{low} {low_op} " if low is not None else "", field, f" {high_op} {high}" if high is not None else ""]
    return " (allowed: " + "".join(parts) + ")"


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown setting; known settings: {', '.join(StarsConfig.model_fields)}")
            continue
        message = err["msg"].removeprefix("Value error, ")
        shown = f"={err['input']!r}" if "input" in err and err["loc"] else ""
        lines.append(f"{field}{shown}: {message}{_bounds(field)}")
    return "invalid StarsConfig: " + "; ".join(lines)
