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

# StarsConfig fields that have an OpenAI spelling: they are set with the OpenAI field only.
OPENAI_SPELLING = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls",
}
# Keys of the `stars` object besides StarsConfig's own fields.
EXTRA_STARS_KEYS = ("reward",)


def stars_keys() -> tuple[str, ...]:
    """Every key the `stars` object accepts."""
    return tuple(f for f in StarsConfig.model_fields if f not in OPENAI_SPELLING) + EXTRA_STARS_KEYS


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


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: str | dict[str, Any] = "{}"


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
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
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    def unsupported(self) -> dict[str, tuple[Any, ...]]:
        return {
            **super().unsupported(),
            "logprobs": (None, False),
            "top_logprobs": (None, 0),
            "functions": (None, []),
            "function_call": (None, "none", "auto"),
            "response_format": (None, {"type": "text"}),
            "reasoning_effort": (None,),
        }

    def prompts(self) -> list[list[dict[str, Any]]]:
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


def _message_dict(index: int, message: ChatMessage) -> dict[str, Any]:
    content = message.content
    if isinstance(content, list):
        content = "".join(part.text for part in content)
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": content or ""}
    if message.tool_calls:
        if role != "assistant":
            raise bad_request("only assistant messages carry tool_calls", param=f"messages.{index}.tool_calls")
        out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if role == "tool":
        if not message.tool_call_id:
            raise bad_request(
                "a tool message needs the tool_call_id of the call it answers", param=f"messages.{index}.tool_call_id"
            )
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out


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
    if not is_chat:
        overrides.setdefault("apply_chat_template", False)  # a completion continues the raw text
    overrides.update(_openai_settings(request, limits))
    call = _call(runtime, overrides)
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


def _call(runtime: Any, overrides: dict[str, Any]) -> Call:
    try:
        return calls.prepare_call(
            runtime, runtime.config.model_dump(), overrides, owner="stars serve", registered_rewards_only=True
        )
    except UnknownRewardError as exc:
        raise APIError(400, str(exc), param="stars.reward") from None
    except ConfigError as exc:
        raise APIError(400, str(exc), param=_param_named_in(str(exc), overrides)) from None


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
    tools = getattr(request, "tools", None)
    if tools:
        changes["tools"] = tools
    choice = getattr(request, "tool_choice", None)
    if choice is not None:
        if tools:
            changes["tool_choice"] = choice
        elif choice not in ("auto", "none"):
            raise bad_request("tool_choice needs tools: pass the functions in 'tools'", param="tool_choice")
    if getattr(request, "parallel_tool_calls", None) is not None:
        changes["parallel_tool_calls"] = request.parallel_tool_calls
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
    settings = dict(stars or {})
    for key in settings:
        if key in OPENAI_SPELLING:
            raise bad_request(
                f"set {key} with the OpenAI field {OPENAI_SPELLING[key]!r}, not in 'stars'", param=f"stars.{key}"
            )
        if key not in stars_keys():
            raise bad_request(
                f"unknown STARS setting {key!r}; known settings: {', '.join(stars_keys())}", param=f"stars.{key}"
            )
    return settings


def _param_named_in(message: str, changes: dict[str, Any]) -> str | None:
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
    return OPENAI_SPELLING.get(key) or f"stars.{key}"
