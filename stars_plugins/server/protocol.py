"""OpenAI request bodies and their translation into one `StarsConfig` per choice.

OpenAI fields map onto `StarsConfig` (max_tokens / max_completion_tokens -> max_new_tokens,
temperature, top_p, stop, seed); STARS settings travel in one `stars` object (the client's
`extra_body`). Anything unknown, unsupported or out of range is an `APIError` (HTTP 400) whose
`param` names the request field.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stars_plugins import calls
from stars_plugins.calls import Call
from stars_plugins.config import StarsConfig
from stars_plugins.errors import ConfigError, UnknownRewardError
from stars_plugins.server.errors import APIError, bad_request
from stars_plugins.server.structured import CONSTRAINT_KEYS, request_constraint

# StarsConfig fields that have an OpenAI spelling: they are set with the OpenAI field only.
OPENAI_SPELLING = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
}
# Keys of the `stars` object besides StarsConfig's own fields: the reward, and the constraints
# that are not OpenAI's `response_format` (the config's `constraint` is set through these only).
EXTRA_STARS_KEYS = ("reward", *CONSTRAINT_KEYS)
_NOT_STARS_KEYS = {*OPENAI_SPELLING, "constraint"}


def stars_keys() -> tuple[str, ...]:
    """Every key the `stars` object accepts."""
    return tuple(f for f in StarsConfig.model_fields if f not in _NOT_STARS_KEYS) + EXTRA_STARS_KEYS


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for, and how much the server takes on at once."""

    max_tokens: int = 4096  # cap on max_tokens / max_completion_tokens
    max_candidates: int = 16  # cap on stars.num_candidates and stars.max_adaptive_candidates
    max_n: int = 8  # cap on n (choices per prompt)
    max_prompts: int = 32  # cap on the prompts of one /v1/completions request
    max_body_bytes: int = 1 << 20
    max_concurrent_requests: int = 64  # HTTP requests generating at once
    max_queued_requests: int = 256  # HTTP requests waiting for a slot; past this: 429
    retry_after_seconds: int = 1


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None  # accepted only empty: no tool calling
    refusal: str | None = None


class _GenerationRequest(BaseModel):
    """Fields both endpoints share. Unknown fields are rejected (as OpenAI does)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None  # text, json_object or json_schema (server/structured.py)
    stars: dict[str, Any] | None = Field(None, description="STARS settings (the client's extra_body)")

    def unsupported(self) -> dict[str, tuple[Any, ...]]:
        """OpenAI fields this server accepts only with a neutral value: field -> neutral values."""
        return {
            "presence_penalty": (None, 0, 0.0),
            "frequency_penalty": (None, 0, 0.0),
            "logit_bias": (None, {}),
        }


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    def unsupported(self) -> dict[str, tuple[Any, ...]]:
        return {
            **super().unsupported(),
            "logprobs": (None, False),
            "top_logprobs": (None, 0),
            "tools": (None, []),
            "tool_choice": (None, "none", "auto"),
            "functions": (None, []),
            "function_call": (None, "none", "auto"),
            "reasoning_effort": (None,),
        }

    def prompts(self) -> list[list[dict[str, str]]]:
        return [[_message_dict(i, m) for i, m in enumerate(self.messages)]]


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None

    def unsupported(self) -> dict[str, tuple[Any, ...]]:
        return {
            **super().unsupported(),
            "echo": (False,),
            "suffix": (None, ""),
            "logprobs": (None, 0),
            "best_of": (None, 1, self.n),
        }

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def _message_dict(index: int, message: ChatMessage) -> dict[str, str]:
    if message.tool_calls:
        raise bad_request("tool calls are not supported by stars serve", param=f"messages.{index}.tool_calls")
    content = message.content
    if isinstance(content, list):
        content = "".join(part.text for part in content)
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content or ""}


@dataclass(frozen=True)
class Choice:
    """One generation a request asks for: a prompt and the call it runs as."""

    index: int
    prompt_index: int  # which prompt of the request (the n choices of one prompt share it)
    prompt: Any
    call: Call

    @property
    def config(self) -> StarsConfig:
        return self.call.config


@dataclass(frozen=True)
class Plan:
    """A request translated: its choices (prompts x n) and how to answer."""

    choices: list[Choice]
    stream: bool
    include_usage: bool

    @property
    def prompt_of(self) -> dict[int, int]:
        return {c.index: c.prompt_index for c in self.choices}


def plan_request(request: ChatCompletionRequest | CompletionRequest, runtime: Any, limits: ServerLimits) -> Plan:
    """Validate a request against the server's limits and build its choices through the one
    request path (`calls.prepare_call`), starting from the runtime's default config. Resolving the
    reward may load it (once per process): call this off the event loop."""
    for field, neutral in request.unsupported().items():
        value = getattr(request, field)
        if value not in neutral:
            raise bad_request(
                f"{field} is not supported by stars serve; leave it unset", param=field, code="unsupported_parameter"
            )
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed with stream=true", param="stream_options")
    if not 1 <= request.n <= limits.max_n:
        raise bad_request(f"n must be between 1 and {limits.max_n}", param="n")
    is_chat = isinstance(request, ChatCompletionRequest)
    prompts = request.prompts()
    if not prompts:
        raise bad_request("prompt must not be empty", param="prompt")
    if len(prompts) > limits.max_prompts:
        raise bad_request(f"at most {limits.max_prompts} prompts per request", param="prompt")

    overrides = _stars_settings(request.stars)
    constraint, constraint_param = request_constraint(request.response_format, request.stars)  # 400: no model work
    if constraint is not None:
        overrides["constraint"] = constraint
    if not is_chat:
        overrides.setdefault("apply_chat_template", False)  # a completion continues the raw text
    overrides.update(_openai_settings(request, limits))
    call = _call(runtime, overrides, {"constraint": constraint_param})
    if call.config.num_candidates > limits.max_candidates:
        raise bad_request(
            f"num_candidates must be at most {limits.max_candidates} on this server", param="stars.num_candidates"
        )
    if call.config.max_adaptive_candidates > limits.max_candidates:  # rows a rejected request may widen to
        if "max_adaptive_candidates" in overrides:
            raise bad_request(
                f"max_adaptive_candidates must be at most {limits.max_candidates} on this server",
                param="stars.max_adaptive_candidates",
            )
        call = call.with_config(max_adaptive_candidates=limits.max_candidates)

    seed = call.config.seed
    seeds: list[int | None] = [seed] * request.n
    if request.n > 1:
        # Same prompt and seed give the same answer: n choices need n seeds.
        first = seed if seed is not None else secrets.randbelow(2**31)
        seeds = [first + j for j in range(request.n)]
    choices = [
        Choice(i * request.n + j, i, prompt, call if seeds[j] == seed else call.with_config(seed=seeds[j]))
        for i, prompt in enumerate(prompts)
        for j in range(request.n)
    ]
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return Plan(choices, request.stream, include_usage)


def _call(runtime: Any, overrides: dict[str, Any], params: dict[str, str | None]) -> Call:
    try:
        return calls.prepare_call(
            runtime, runtime.config.model_dump(), overrides, owner="stars serve", registered_rewards_only=True
        )
    except UnknownRewardError as exc:
        raise APIError(400, str(exc), param="stars.reward") from None
    except ConfigError as exc:
        raise APIError(400, str(exc), param=_param_named_in(str(exc), overrides, params)) from None


def _openai_settings(request: ChatCompletionRequest | CompletionRequest, limits: ServerLimits) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    budget_field, budget = "max_tokens", request.max_tokens
    completion_budget = getattr(request, "max_completion_tokens", None)
    if completion_budget is not None:
        if budget is not None and budget != completion_budget:
            raise bad_request(
                "max_tokens and max_completion_tokens disagree; set one of them", param="max_completion_tokens"
            )
        budget_field, budget = "max_completion_tokens", completion_budget
    if budget is not None:
        if not 1 <= budget <= limits.max_tokens:
            raise bad_request(
                f"{budget_field} must be between 1 and {limits.max_tokens} on this server", param=budget_field
            )
        changes["max_new_tokens"] = budget
    if request.temperature is not None:
        if not 0 <= request.temperature <= 2:
            raise bad_request("temperature must be between 0 and 2", param="temperature")
        changes["temperature"] = request.temperature
    for field in ("top_p", "seed", "stop"):
        value = getattr(request, field)
        if value is not None:
            changes[field] = value
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise bad_request("at most 4 stop sequences", param="stop")
    return changes


def _stars_settings(stars: dict[str, Any] | None) -> dict[str, Any]:
    """The `stars` object's keys as call overrides (the reward included); keys with an OpenAI
    spelling or that are not settings are refused, naming them."""
    settings = {key: value for key, value in (stars or {}).items() if key not in CONSTRAINT_KEYS}
    for key in stars or {}:
        if key in OPENAI_SPELLING:
            raise bad_request(
                f"set {key} with the OpenAI field {OPENAI_SPELLING[key]!r}, not in 'stars'", param=f"stars.{key}"
            )
        if key not in stars_keys():
            hint = " (set a constraint with response_format, or stars.regex / choice / grammar)"
            raise bad_request(
                f"unknown STARS setting {key!r}{hint if key == 'constraint' else ''}; known settings: "
                f"{', '.join(stars_keys())}",
                param=f"stars.{key}",
            )
    return settings


def _param_named_in(message: str, changes: dict[str, Any], params: dict[str, str | None]) -> str | None:
    """The request field behind the first setting a `ConfigError` message names."""
    detail = message.partition(":")[2]
    positions = {
        key: pos
        for key in changes
        if (pos := min((p for p in (detail.find(f" {key}="), detail.find(f" {key}:")) if p >= 0), default=-1)) >= 0
    }
    if not positions:
        return None
    key = min(positions, key=positions.__getitem__)
    return params.get(key) or OPENAI_SPELLING.get(key) or f"stars.{key}"
