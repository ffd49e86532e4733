"""`StarsLLM`: STARS reward-guided decoding as a LlamaIndex LLM.

A thin adapter: every call turns the engine's settings plus per-call keyword overrides into one
validated `StarsConfig` and runs it on a `StarsRuntime` taken from the process-wide policy cache
(so every `StarsLLM`, every LangChain `ChatStars` and every plain runtime naming the same policy
share one loaded model). Results come back as LlamaIndex responses whose `raw` carries the STARS
statistics.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llama_index.core.base.llms.generic_utils import messages_to_prompt as generic_messages_to_prompt
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationError, field_serializer, field_validator
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import default_completion_to_prompt
from pydantic import ConfigDict

from stars_plugins import (
    ConfigError,
    GenerationResult,
    PromptTooLongError,
    RewardModel,
    Segment,
    StarsConfig,
    StarsRuntime,
    load_reward,
)

dispatcher = get_dispatcher(__name__)

#: StarsConfig settings that are also `StarsLLM` fields (the per-engine defaults of every call).
ENGINE_SETTINGS = (
    "strategy", "horizon", "num_candidates", "max_new_tokens", "max_rejections", "alpha", "beta",
    "acceptance", "target_reward", "temperature", "top_k", "top_p", "seed", "stop", "apply_chat_template",
    "system_prompt",
)
#: Keyword arguments a call accepts: every StarsConfig setting, `reward`, and `max_tokens`
#: (an alias of `max_new_tokens`).
CALL_SETTINGS = frozenset(StarsConfig.model_fields) | {"reward", "max_tokens"}

_RUNTIME_LOCK = threading.Lock()
_ROLE_NAMES = {MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant"}


def _default(name: str) -> Any:
    """A `StarsLLM` field that mirrors a `StarsConfig` field: same default, same description."""
    info = StarsConfig.model_fields[name]
    return Field(default=info.default, description=info.description)


@dataclass
class _Call:
    """One resolved call: the runtime, the validated config and the reward model it runs with."""

    runtime: StarsRuntime
    config: StarsConfig
    reward: RewardModel


class StarsLLM(CustomLLM):
    """STARS reward-guided decoding for LlamaIndex query engines, chat engines and RAG pipelines.

    ```python
    from llama_index.llms.stars import StarsLLM

    Settings.llm = StarsLLM()                                    # embedded policy and reward
    engine = index.as_query_engine(llm=StarsLLM(reward="sentiment", horizon=16))
    llm.complete("Hi", horizon=8, max_tokens=32)                 # per-call overrides
    ```

    Settings mirror `stars_plugins.StarsConfig` and are validated by it: an invalid value raises the
    runtime's `ConfigError`, at construction for engine settings and at the call for overrides.
    Pass `runtime=` to reuse an existing `StarsRuntime` (its loaded policy) instead of `policy=`.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # --- models ---------------------------------------------------------------------------------
    policy: str | None = Field(
        default=None,
        description="Policy model: None (embedded SmolLM2-135M-Instruct), a hub id, a folder or a .gguf file.",
    )
    reward: Any = Field(
        default=None,
        description="Reward: None (the default built-in), a built-in name, a classifier folder or hub id, "
        "a RewardModel, or a callable (prompts, responses) -> scores.",
    )
    dtype: str = Field(default="auto", description="Policy dtype: auto, float32, bfloat16 or float16.")
    device: str | None = Field(default=None, description="Policy device; None picks CUDA when available.")
    context_window: int | None = Field(
        default=None, gt=0,
        description="Context window reported to LlamaIndex and enforced; None: the model's own window.",
    )

    # --- STARS settings (the defaults of every call; see StarsConfig) -----------------------------
    strategy: str = _default("strategy")
    horizon: int = _default("horizon")
    num_candidates: int = _default("num_candidates")
    max_new_tokens: int = _default("max_new_tokens")
    max_rejections: int = _default("max_rejections")
    alpha: float = _default("alpha")
    beta: float = _default("beta")
    acceptance: Literal["soft", "hard"] = _default("acceptance")
    target_reward: float | None = _default("target_reward")
    temperature: float = _default("temperature")
    top_k: int = _default("top_k")
    top_p: float = _default("top_p")
    seed: int | None = _default("seed")
    stop: list[str] | None = Field(default=None, description="Stop strings: the text is cut before the first one.")
    apply_chat_template: bool = _default("apply_chat_template")

    _runtime: StarsRuntime | None = PrivateAttr(default=None)
    _given_runtime: StarsRuntime | None = PrivateAttr(default=None)

    def __init__(self, *, runtime: StarsRuntime | None = None, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        if runtime is not None and self.policy is not None:
            raise ConfigError("pass either runtime= or policy=, not both (a runtime already holds its policy)")
        self._given_runtime = runtime
        self._engine_config()  # engine settings are validated now, with the runtime's messages

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_serializer("reward")
    def _reward_name(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return getattr(value, "name", None) or getattr(value, "__qualname__", None) or type(value).__name__

    @classmethod
    def class_name(cls) -> str:
        return "StarsLLM"

    # ================================================================== runtime and metadata
    @property
    def runtime(self) -> StarsRuntime:
        """The `StarsRuntime` this LLM runs on, loaded on first use (the policy comes from the
        process-wide cache, so instances naming the same policy share it)."""
        if self._runtime is None:
            with _RUNTIME_LOCK:
                if self._runtime is None:
                    self._runtime = self._load_runtime()
        return self._runtime

    def _load_runtime(self) -> StarsRuntime:
        given = self._given_runtime
        if given is None:
            runtime = StarsRuntime.from_pretrained(self.policy, self.reward, dtype=self.dtype, device=self.device)
        elif self.reward is not None:
            runtime = StarsRuntime(given.policy, load_reward(self.reward, device=str(given.policy.device)),
                                   given.config)
        else:
            runtime = given
        if self.context_window is not None and self.context_window > runtime.context_window:
            raise ConfigError(
                f"context_window={self.context_window} exceeds the context window of {runtime.model_name} "
                f"({runtime.context_window} tokens); pass a smaller value or None to use the model's"
            )
        return runtime

    async def _aruntime(self) -> StarsRuntime:
        """`runtime` without blocking the event loop while the model loads (first call only)."""
        if self._runtime is not None:
            return self._runtime
        return await asyncio.to_thread(lambda: self.runtime)

    @property
    def metadata(self) -> LLMMetadata:
        rt = self.runtime
        return LLMMetadata(
            context_window=self._window(rt),
            num_output=self.max_new_tokens,
            is_chat_model=rt.policy.has_chat_template and self.apply_chat_template,
            is_function_calling_model=False,
            model_name=rt.model_name,
        )

    def to_payload(self) -> dict[str, Any]:
        """What callbacks and instrumentation events see. Never loads the model: before the first
        call it reports the settings only (so an async first call does not block the loop)."""
        payload: dict[str, Any] = {"class_name": self.class_name()}
        if self._runtime is not None:
            payload.update(self.metadata.model_dump())
            payload["reward"] = self._runtime.reward.name
        else:
            payload["model_name"] = self.policy or "embedded"
            payload["reward"] = self._reward_name(self.reward)
        payload.update({name: getattr(self, name) for name in ENGINE_SETTINGS if name != "system_prompt"})
        return payload

    def tokenize(self, text: str) -> list[int]:
        """The policy's tokenizer, for `Settings.tokenizer = llm.tokenize` (exact prompt budgeting)."""
        return list(self.runtime.policy.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _window(self, rt: StarsRuntime) -> int:
        return self.context_window if self.context_window is not None else rt.context_window

    # ================================================================== settings
    def _engine_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ENGINE_SETTINGS}

    def _engine_config(self) -> StarsConfig:
        return self._call_config({}, {})[0]

    def _call_config(self, forced: dict[str, Any], kwargs: dict[str, Any]) -> tuple[StarsConfig, Any]:
        """Engine settings, then `forced` (what the prompt format implies), then per-call kwargs."""
        overrides = dict(kwargs)
        unknown = sorted(set(overrides) - CALL_SETTINGS)
        if unknown:
            raise ConfigError(
                f"unknown per-call setting(s) {', '.join(unknown)} for StarsLLM; accepted: "
                f"{', '.join(sorted(CALL_SETTINGS))}"
            )
        reward = overrides.pop("reward", None)
        if "max_tokens" in overrides:
            if "max_new_tokens" in overrides:
                raise ConfigError("pass max_tokens or max_new_tokens, not both (max_tokens is an alias)")
            overrides["max_new_tokens"] = overrides.pop("max_tokens")
        settings = {**self._engine_settings(), **forced, **overrides}
        if settings.get("stop") is None:
            settings.pop("stop", None)
        return StarsConfig(**settings), reward

    def _prepare(self, rt: StarsRuntime, prompts: Sequence[Any], forced: dict[str, Any],
                 kwargs: dict[str, Any]) -> _Call:
        config, reward_spec = self._call_config(forced, kwargs)
        reward = rt.reward if reward_spec is None else load_reward(reward_spec, device=str(rt.policy.device))
        self._check_window(rt, config, prompts)
        return _Call(rt, config, reward)

    async def _aprepare(self, prompts: Sequence[Any], forced: dict[str, Any], kwargs: dict[str, Any]) -> _Call:
        rt = await self._aruntime()
        config, reward_spec = self._call_config(forced, kwargs)
        if reward_spec is None:
            reward = rt.reward
        else:  # a classifier reward may load weights: keep that off the event loop
            reward = await asyncio.to_thread(load_reward, reward_spec, device=str(rt.policy.device))
        self._check_window(rt, config, prompts)
        return _Call(rt, config, reward)

    def _check_window(self, rt: StarsRuntime, config: StarsConfig, prompts: Sequence[Any]) -> None:
        """Enforce a `context_window` smaller than the model's (the runtime enforces the model's own)."""
        window = self._window(rt)
        if window >= rt.context_window or config.truncate_prompt:
            return
        for index, prompt in enumerate(prompts):
            ids, _ = rt.policy.render(prompt, config, index)
            if len(ids) + config.max_new_tokens > window:
                raise PromptTooLongError(
                    f"prompt {index} has {len(ids)} tokens; with max_new_tokens={config.max_new_tokens} "
                    f"(num_output) it needs {len(ids) + config.max_new_tokens}, but this StarsLLM's context "
                    f"window is {window} tokens (context_window={window}; {rt.model_name} allows "
                    f"{rt.context_window}). Shorten the prompt, lower max_new_tokens, or raise context_window.",
                    index=index, prompt_tokens=len(ids), max_new_tokens=config.max_new_tokens, limit=window,
                )

    # ================================================================== prompt formatting
    def _has_custom_completion_to_prompt(self) -> bool:
        return self.completion_to_prompt is not default_completion_to_prompt

    def _completion_input(self, prompt: str, formatted: bool) -> tuple[str, dict[str, Any]]:
        """The prompt text and the settings its format implies; identical for every completion method.

        `formatted=False` (a direct call): the query wrapper and `completion_to_prompt` apply if set;
        otherwise the policy's chat template wraps the prompt, with `system_prompt` as the system turn.
        `formatted=True` (LlamaIndex formatted it, system prompt included): only the chat template
        applies, unless a custom `completion_to_prompt` already produced the model's format.
        """
        custom = self._has_custom_completion_to_prompt()
        text = prompt
        if not formatted:
            if self.query_wrapper_prompt is not None:
                text = self.query_wrapper_prompt.format(query_str=text)
            if custom:
                text = self.completion_to_prompt(text)
        forced: dict[str, Any] = {}
        if custom:
            forced["apply_chat_template"] = False
        if formatted or custom:
            forced["system_prompt"] = None
        return text, forced

    def _chat_input(self, messages: Sequence[ChatMessage]) -> tuple[Any, dict[str, Any]]:
        """Chat messages as {"role", "content"} dicts for the policy's own chat template, or, when a
        custom `messages_to_prompt` is set, the text it renders (used as is)."""
        if self.messages_to_prompt is not generic_messages_to_prompt:
            chat = list(messages)
            if self.system_prompt and not any(m.role == MessageRole.SYSTEM for m in chat):
                chat = [ChatMessage(role=MessageRole.SYSTEM, content=self.system_prompt), *chat]
            return self.messages_to_prompt(chat), {"apply_chat_template": False, "system_prompt": None}
        return [_message_dict(m) for m in messages], {}

    # ================================================================== results
    def _raw(self, call: _Call, result: GenerationResult) -> dict[str, Any]:
        stats = result.stats.as_dict()
        completion_tokens = len(result.token_ids)
        return {
            "model": call.runtime.model_name,
            "reward_model": call.reward.name,
            "strategy": result.strategy,
            "text": result.text,
            "reward": result.reward,
            "finish_reason": result.finish_reason,
            "stats": stats,
            "segments": [_segment_dict(s) for s in result.segments],
            "config": call.config.model_dump(mode="json"),
            "usage": {
                "prompt_tokens": result.stats.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": result.stats.prompt_tokens + completion_tokens,
            },
        }

    def _completion(self, call: _Call, result: GenerationResult) -> CompletionResponse:
        raw = self._raw(call, result)
        return CompletionResponse(text=result.text, raw=raw, additional_kwargs=dict(raw["usage"]))

    def _chat(self, call: _Call, result: GenerationResult) -> ChatResponse:
        raw = self._raw(call, result)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text), raw=raw,
                            additional_kwargs=dict(raw["usage"]))

    def _chunks(self, call: _Call, stream: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(cumulative text, delta, raw) per accepted segment; the last chunk's raw has the full stats."""
        text, final, result = "", None, None
        try:
            for segment in stream:
                text += segment.text
                if segment.final:  # the stream ends right after: its chunk carries the result
                    final = segment
                    continue
                yield text, segment.text, {"segment": _segment_dict(segment)}
            result = stream.result
        finally:
            stream.close()
        if result is not None:
            yield text, final.text if final else "", self._stream_end(call, result, final)

    async def _achunks(self, call: _Call, stream: Any) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
        text, final, result = "", None, None
        try:
            async for segment in stream:
                text += segment.text
                if segment.final:
                    final = segment
                    continue
                yield text, segment.text, {"segment": _segment_dict(segment)}
            result = stream.result
        finally:
            if result is None:  # the consumer left early (or an error): stop at the next round boundary
                await stream.aclose()
        if result is not None:
            yield text, final.text if final else "", self._stream_end(call, result, final)

    def _stream_end(self, call: _Call, result: GenerationResult, final: Segment | None) -> dict[str, Any]:
        raw = self._raw(call, result)
        if final is not None:
            raw["segment"] = _segment_dict(final)
        return raw

    # ================================================================== completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, forced = self._completion_input(prompt, formatted)
        call = self._prepare(self.runtime, [text], forced, kwargs)
        result = call.runtime.generate([text], call.config, reward=call.reward)[0]
        return self._completion(call, result)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text, forced = self._completion_input(prompt, formatted)
        call = self._prepare(self.runtime, [text], forced, kwargs)
        stream = call.runtime.stream(text, call.config, reward=call.reward)  # validates and tokenizes now

        def gen() -> CompletionResponseGen:
            for cumulative, delta, raw in self._chunks(call, stream):
                yield CompletionResponse(text=cumulative, delta=delta, raw=raw,
                                         additional_kwargs=dict(raw.get("usage", {})))

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, forced = self._completion_input(prompt, formatted)
        call = await self._aprepare([text], forced, kwargs)
        results = await call.runtime.agenerate([text], call.config, reward=call.reward)
        return self._completion(call, results[0])

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        text, forced = self._completion_input(prompt, formatted)
        call = await self._aprepare([text], forced, kwargs)
        stream = call.runtime.astream(text, call.config, reward=call.reward)

        async def gen() -> CompletionResponseAsyncGen:
            async for cumulative, delta, raw in self._achunks(call, stream):
                yield CompletionResponse(text=cumulative, delta=delta, raw=raw,
                                         additional_kwargs=dict(raw.get("usage", {})))

        return gen()

    # ================================================================== chat
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kwargs.pop("formatted", None)
        prompt, forced = self._chat_input(messages)
        call = self._prepare(self.runtime, [prompt], forced, kwargs)
        result = call.runtime.generate([prompt], call.config, reward=call.reward)[0]
        return self._chat(call, result)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        kwargs.pop("formatted", None)
        prompt, forced = self._chat_input(messages)
        call = self._prepare(self.runtime, [prompt], forced, kwargs)
        stream = call.runtime.stream(prompt, call.config, reward=call.reward)

        def gen() -> ChatResponseGen:
            for cumulative, delta, raw in self._chunks(call, stream):
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=cumulative), delta=delta,
                                   raw=raw, additional_kwargs=dict(raw.get("usage", {})))

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kwargs.pop("formatted", None)
        prompt, forced = self._chat_input(messages)
        call = await self._aprepare([prompt], forced, kwargs)
        results = await call.runtime.agenerate([prompt], call.config, reward=call.reward)
        return self._chat(call, results[0])

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        kwargs.pop("formatted", None)
        prompt, forced = self._chat_input(messages)
        call = await self._aprepare([prompt], forced, kwargs)
        stream = call.runtime.astream(prompt, call.config, reward=call.reward)

        async def gen() -> ChatResponseAsyncGen:
            async for cumulative, delta, raw in self._achunks(call, stream):
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=cumulative), delta=delta,
                                   raw=raw, additional_kwargs=dict(raw.get("usage", {})))

        return gen()

    # ================================================================== batches (one lockstep batch)
    @dispatcher.span
    def batch_complete(
        self, prompts: Sequence[str], formatted: bool = False, **kwargs: Any
    ) -> list[CompletionResponse]:
        """Complete several prompts in ONE lockstep batch (one reward pass per round for all of them).
        Same formatting and per-call settings as `complete`; one response per prompt, in order."""
        texts, forced = self._completion_batch(prompts, formatted)
        call = self._prepare(self.runtime, texts, forced, kwargs)
        self._emit_completion_starts(texts, kwargs)
        responses = [self._completion(call, r) for r in call.runtime.generate(texts, call.config, reward=call.reward)]
        self._emit_completion_ends(texts, responses)
        return responses

    @dispatcher.span
    async def abatch_complete(
        self, prompts: Sequence[str], formatted: bool = False, **kwargs: Any
    ) -> list[CompletionResponse]:
        """`batch_complete` in a worker thread: the event loop keeps running."""
        texts, forced = self._completion_batch(prompts, formatted)
        call = await self._aprepare(texts, forced, kwargs)
        self._emit_completion_starts(texts, kwargs)
        results = await call.runtime.agenerate(texts, call.config, reward=call.reward)
        responses = [self._completion(call, r) for r in results]
        self._emit_completion_ends(texts, responses)
        return responses

    @dispatcher.span
    def batch_chat(self, conversations: Sequence[Sequence[ChatMessage]], **kwargs: Any) -> list[ChatResponse]:
        """Answer several conversations in ONE lockstep batch; one `ChatResponse` per conversation."""
        prompts, forced = self._chat_batch(conversations)
        call = self._prepare(self.runtime, prompts, forced, kwargs)
        self._emit_chat_starts(conversations, kwargs)
        responses = [self._chat(call, r) for r in call.runtime.generate(prompts, call.config, reward=call.reward)]
        self._emit_chat_ends(conversations, responses)
        return responses

    @dispatcher.span
    async def abatch_chat(self, conversations: Sequence[Sequence[ChatMessage]], **kwargs: Any) -> list[ChatResponse]:
        """`batch_chat` in a worker thread: the event loop keeps running."""
        prompts, forced = self._chat_batch(conversations)
        call = await self._aprepare(prompts, forced, kwargs)
        self._emit_chat_starts(conversations, kwargs)
        results = await call.runtime.agenerate(prompts, call.config, reward=call.reward)
        responses = [self._chat(call, r) for r in results]
        self._emit_chat_ends(conversations, responses)
        return responses

    def _completion_batch(self, prompts: Sequence[str], formatted: bool) -> tuple[list[str], dict[str, Any]]:
        if isinstance(prompts, str):
            raise TypeError("batch_complete takes a list of prompts; use complete() for one prompt")
        pairs = [self._completion_input(p, formatted) for p in prompts]
        return [text for text, _ in pairs], pairs[0][1] if pairs else {}

    def _chat_batch(self, conversations: Sequence[Sequence[ChatMessage]]) -> tuple[list[Any], dict[str, Any]]:
        pairs = [self._chat_input(c) for c in conversations]
        return [prompt for prompt, _ in pairs], pairs[0][1] if pairs else {}

    def _emit_completion_starts(self, prompts: Sequence[str], kwargs: dict[str, Any]) -> None:
        payload = self.to_payload()
        for prompt in prompts:
            dispatcher.event(LLMCompletionStartEvent(prompt=prompt, additional_kwargs=kwargs, model_dict=payload))

    def _emit_completion_ends(self, prompts: Sequence[str], responses: Sequence[CompletionResponse]) -> None:
        for prompt, response in zip(prompts, responses, strict=True):
            dispatcher.event(LLMCompletionEndEvent(prompt=prompt, response=response))

    def _emit_chat_starts(self, conversations: Sequence[Sequence[ChatMessage]], kwargs: dict[str, Any]) -> None:
        payload = self.to_payload()
        for messages in conversations:
            dispatcher.event(LLMChatStartEvent(messages=list(messages), additional_kwargs=kwargs, model_dict=payload))

    def _emit_chat_ends(self, conversations: Sequence[Sequence[ChatMessage]],
                        responses: Sequence[ChatResponse]) -> None:
        for messages, response in zip(conversations, responses, strict=True):
            dispatcher.event(LLMChatEndEvent(messages=list(messages), response=response))


# ====================================================================== helpers
def _message_dict(message: ChatMessage) -> dict[str, str]:
    role = _ROLE_NAMES.get(message.role, message.role.value if isinstance(message.role, MessageRole) else message.role)
    return {"role": str(role), "content": message.content or ""}


def _segment_dict(segment: Segment) -> dict[str, Any]:
    return {
        "index": segment.index,
        "text": segment.text,
        "tokens": len(segment.token_ids),
        "reward": segment.reward,
        "threshold": segment.threshold,
        "rejections": segment.rejections,
        "forced": segment.forced,
        "finish_reason": segment.finish_reason,
    }


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            parts.append(f"{field}: unknown setting of StarsLLM")
            continue
        shown = f"={err['input']!r}" if "input" in err and err["loc"] else ""
        parts.append(f"{field}{shown}: {err['msg'].removeprefix('Value error, ')}")
    return "invalid StarsLLM settings: " + "; ".join(parts)
