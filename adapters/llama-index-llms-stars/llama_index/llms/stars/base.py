"""`StarsLLM`: STARS reward-guided decoding as a LlamaIndex LLM, a thin adapter over the core's call
surface (`stars_plugins.calls`); responses carry the STARS statistics in `raw`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.generic_utils import messages_to_prompt as generic_messages_to_prompt
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata, MessageRole
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_serializer, field_validator
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events import llm as events
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import default_completion_to_prompt
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.types import PydanticProgramMode
from pydantic import BaseModel, ConfigDict

from stars_plugins import ConfigError, GenerationResult, StarsRuntime, calls
from stars_plugins.calls import CALL_SETTINGS, Call, off_loop  # noqa: F401  (CALL_SETTINGS: re-exported)
from stars_plugins.constraints import Constraint
from stars_plugins.streams import closing_stream

dispatcher = get_dispatcher(__name__)
Model = TypeVar("Model", bound=BaseModel)
_ROLE_NAMES = {MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant"}


class StarsLLM(calls.settings_model("StarsLLMConfigFields"), CustomLLM):  # type: ignore[misc]
    """STARS reward-guided decoding for LlamaIndex query engines, chat engines and RAG pipelines.

    ```python
    from llama_index.llms.stars import StarsLLM

    Settings.llm = StarsLLM()                                    # embedded policy and reward
    engine = index.as_query_engine(llm=StarsLLM(reward="sentiment", horizon=16))
    llm.complete("Hi", horizon=8, max_tokens=32)                 # per-call overrides
    ```

    Every `stars_plugins.StarsConfig` setting is a field, validated by `StarsConfig`: an invalid value
    raises the runtime's `ConfigError`, at construction for fields and at the call for overrides.
    Pass `runtime=` to reuse an existing `StarsRuntime` (its loaded policy) instead of `policy=`.
    Leaving a loop over a stream early cancels its request.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    policy: str | None = Field(
        default=None,
        description="Policy model: None (embedded SmolLM2-135M-Instruct), a hub id, a folder or a .gguf file.",
    )
    reward: Any = Field(
        default=None,
        description="Reward: None (the default built-in), a built-in name, a classifier folder or hub id, "
        "a RewardModel, or a callable (prompts, responses) -> scores.",
    )
    policy_tokenizer: str | None = Field(None, description="Tokenizer (hub id, folder, .gguf) of a served policy.")
    dtype: str = Field(default="auto", description="Policy dtype: auto, float32, bfloat16 or float16.")
    device: str | None = Field(default=None, description="Policy device; None picks CUDA when available.")
    context_window: int | None = Field(
        default=None,
        gt=0,
        description="Context window reported to LlamaIndex and enforced; None: the model's own window.",
    )

    _slot: calls.RuntimeSlot = PrivateAttr(default_factory=calls.RuntimeSlot)
    _given_runtime: StarsRuntime | None = PrivateAttr(default=None)

    def __init__(self, *, runtime: StarsRuntime | None = None, **data: Any) -> None:
        super().__init__(**data)
        calls.check_reward(self.reward)
        if runtime is not None and self.policy is not None:
            raise ConfigError("pass either runtime= or policy=, not both (a runtime already holds its policy)")
        self._given_runtime = runtime

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_serializer("reward")
    def _reward_name(self, value: Any) -> Any:
        return calls.reward_label(value)

    @classmethod
    def class_name(cls) -> str:
        return "StarsLLM"

    # ================================================================== runtime and metadata
    @property
    def runtime(self) -> StarsRuntime:
        """The `StarsRuntime` this LLM runs on, loaded on first use (the policy comes from the
        process-wide cache, so instances naming the same policy share it)."""
        rt = self._slot.get(
            self.policy,
            self.reward,
            dtype=self.dtype,
            device=self.device,
            base=self._given_runtime,
            policy_tokenizer=self.policy_tokenizer,
        )
        if self.context_window is not None and self.context_window > rt.context_window:
            raise ConfigError(
                f"context_window={self.context_window} exceeds the context window of {rt.model_name} "
                f"({rt.context_window} tokens); pass a smaller value or None to use the model's"
            )
        return rt

    @property
    def metadata(self) -> LLMMetadata:
        rt = self.runtime
        return LLMMetadata(
            context_window=self.context_window or rt.context_window,
            num_output=self.max_new_tokens,
            is_chat_model=rt.has_chat_template and self.apply_chat_template,
            is_function_calling_model=False,
            model_name=rt.model_name,
        )

    def to_payload(self) -> dict[str, Any]:
        """What callbacks and instrumentation events see. Never loads the model: before the first
        call it reports the settings only (so an async first call does not block the loop)."""
        loaded = self._slot.loaded
        payload = {"model_name": calls.policy_label(self.policy), "reward": calls.reward_label(self.reward)}
        if loaded is not None:
            payload.update(self.metadata.model_dump(), reward=loaded.reward.name)
        settings = {name: value for name, value in self.config_settings().items() if name != "system_prompt"}
        return {"class_name": self.class_name(), **payload, **settings}

    def tokenize(self, text: str) -> list[int]:
        """The policy's tokenizer, for `Settings.tokenizer = llm.tokenize` (exact prompt budgeting)."""
        return calls.text_token_ids(self.runtime, text)

    def _call(self, forced: dict[str, Any], kwargs: dict[str, Any]) -> Call:
        """Fields, then `forced` (what the prompt format implies), then the per-call keyword arguments."""
        settings = {**self.config_settings(), **forced}
        return calls.prepare_call(self.runtime, settings, kwargs, owner="StarsLLM", context_window=self.context_window)

    # ================================================================== prompt formatting
    def _completion_input(self, prompt: str, formatted: bool) -> tuple[str, dict[str, Any]]:
        """The prompt text and the settings its format implies; identical for every completion method.

        `formatted=False` (a direct call): the query wrapper and `completion_to_prompt` apply if set;
        otherwise the policy's chat template wraps the prompt, with `system_prompt` as the system turn.
        `formatted=True` (LlamaIndex formatted it, system prompt included): only the chat template
        applies, unless a custom `completion_to_prompt` already produced the model's format.
        """
        custom = self.completion_to_prompt is not default_completion_to_prompt
        text = prompt
        if not formatted and self.query_wrapper_prompt is not None:
            text = self.query_wrapper_prompt.format(query_str=text)
        if not formatted and custom:
            text = self.completion_to_prompt(text)
        forced: dict[str, Any] = {"apply_chat_template": False} if custom else {}
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

    # ================================================================== one code path for every method
    def _answer(self, prompt: Any, forced: dict[str, Any], kwargs: dict[str, Any], chat: bool) -> Any:
        call = self._call(forced, kwargs)
        (result,) = call.generate([prompt])
        return _response(chat, result.text, call.describe(result))

    async def _aanswer(self, prompt: Any, forced: dict[str, Any], kwargs: dict[str, Any], chat: bool) -> Any:
        call = await off_loop(self._call, forced, kwargs)
        (result,) = await call.agenerate([prompt])
        return _response(chat, result.text, call.describe(result))

    def _streamed(self, prompt: Any, forced: dict[str, Any], kwargs: dict[str, Any], chat: bool) -> Any:
        call = self._call(forced, kwargs)
        deltas = call.stream(prompt)  # settings and prompt are checked now, not at the first chunk
        return (_chunk(chat, call, delta) for delta in deltas)

    async def _astreamed(self, prompt: Any, forced: dict[str, Any], kwargs: dict[str, Any], chat: bool) -> Any:
        call = await off_loop(self._call, forced, kwargs)
        return (_chunk(chat, call, delta) async for delta in call.astream(prompt))

    # ================================================================== completion and chat
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._answer(*self._completion_input(prompt, formatted), kwargs, chat=False)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await self._aanswer(*self._completion_input(prompt, formatted), kwargs, chat=False)

    @closing_stream  # leaving a loop over the stream early cancels the request
    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        return self._streamed(*self._completion_input(prompt, formatted), kwargs, chat=False)

    @closing_stream
    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        return await self._astreamed(*self._completion_input(prompt, formatted), kwargs, chat=False)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kwargs.pop("formatted", None)
        return self._answer(*self._chat_input(messages), kwargs, chat=True)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kwargs.pop("formatted", None)
        return await self._aanswer(*self._chat_input(messages), kwargs, chat=True)

    @closing_stream
    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        kwargs.pop("formatted", None)
        return self._streamed(*self._chat_input(messages), kwargs, chat=True)

    @closing_stream
    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        kwargs.pop("formatted", None)
        return await self._astreamed(*self._chat_input(messages), kwargs, chat=True)

    # ================================================================== structured output
    # With the default program mode, `structured_predict` (and `as_structured_llm`, which calls it)
    # holds the answer to `output_cls`'s JSON Schema token by token (a `Constraint`) and parses it;
    # other modes (`pydantic_program_mode=...`) go through LlamaIndex's programs as usual.
    def _structured_input(
        self, output_cls: type[BaseModel], prompt: BasePromptTemplate, llm_kwargs: dict[str, Any] | None, args: Any
    ) -> tuple[list[ChatMessage], dict[str, Any]]:
        kwargs = dict(llm_kwargs or {})
        kwargs.setdefault("constraint", Constraint.json_schema(output_cls.model_json_schema()))
        return prompt.format_messages(**args), kwargs

    def _constrained(self) -> bool:
        return self.pydantic_program_mode == PydanticProgramMode.DEFAULT

    @dispatcher.span
    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """An instance of `output_cls`, the answer constrained to its JSON Schema (docs/llamaindex.md)."""
        if not self._constrained():
            return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        start = events.LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        dispatcher.event(start)
        messages, kwargs = self._structured_input(output_cls, prompt, llm_kwargs, prompt_args)
        result = parse_structured(output_cls, self.chat(messages, **kwargs))
        dispatcher.event(events.LLMStructuredPredictEndEvent(output=result))
        return result

    @dispatcher.span
    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """`structured_predict` without blocking the event loop."""
        if not self._constrained():
            return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)
        start = events.LLMStructuredPredictStartEvent(output_cls=output_cls, template=prompt, template_args=prompt_args)
        dispatcher.event(start)
        messages, kwargs = self._structured_input(output_cls, prompt, llm_kwargs, prompt_args)
        result = parse_structured(output_cls, await self.achat(messages, **kwargs))
        dispatcher.event(events.LLMStructuredPredictEndEvent(output=result))
        return result

    def _structured_stream_call(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Any:
        """Partial objects as segments arrive (LlamaIndex's incremental parser), the last one parsed whole."""
        if not self._constrained():
            yield from super()._structured_stream_call(output_cls, prompt, llm_kwargs, **prompt_args)
            return
        from llama_index.core.program.streaming_utils import process_streaming_content_incremental

        messages, kwargs = self._structured_input(output_cls, prompt, llm_kwargs, prompt_args)
        current = None
        for response in self.stream_chat(messages, **kwargs):
            final = "finish_reason" in response.raw
            current = (
                parse_structured(output_cls, response)
                if final
                else process_streaming_content_incremental(response, output_cls, current)
            )
            yield current

    async def _structured_astream_call(
        self,
        output_cls: type[Model],
        prompt: BasePromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Any:
        if not self._constrained():
            return await super()._structured_astream_call(output_cls, prompt, llm_kwargs, **prompt_args)
        from llama_index.core.program.streaming_utils import process_streaming_content_incremental

        messages, kwargs = self._structured_input(output_cls, prompt, llm_kwargs, prompt_args)

        async def objects() -> Any:
            current = None
            async for response in await self.astream_chat(messages, **kwargs):
                final = "finish_reason" in response.raw
                current = (
                    parse_structured(output_cls, response)
                    if final
                    else process_streaming_content_incremental(response, output_cls, current)
                )
                yield current

        return objects()

    # ================================================================== batches (one lockstep batch)
    @dispatcher.span
    def batch_complete(
        self, prompts: Sequence[str], formatted: bool = False, **kwargs: Any
    ) -> list[CompletionResponse]:
        """Complete several prompts in ONE lockstep batch (one reward pass per round for all of them).
        Same formatting and per-call settings as `complete`; one response per prompt, in order."""
        texts, call = self._batch_call([self._completion_input(p, formatted) for p in _many(prompts)], kwargs)
        self._events(False, texts, kwargs)
        return self._events(False, texts, kwargs, call, call.generate(texts))

    @dispatcher.span
    async def abatch_complete(
        self, prompts: Sequence[str], formatted: bool = False, **kwargs: Any
    ) -> list[CompletionResponse]:
        """`batch_complete` without blocking the event loop."""
        inputs = [self._completion_input(p, formatted) for p in _many(prompts)]
        texts, call = await off_loop(self._batch_call, inputs, kwargs)
        self._events(False, texts, kwargs)
        return self._events(False, texts, kwargs, call, await call.agenerate(texts))

    @dispatcher.span
    def batch_chat(self, conversations: Sequence[Sequence[ChatMessage]], **kwargs: Any) -> list[ChatResponse]:
        """Answer several conversations in ONE lockstep batch; one `ChatResponse` per conversation."""
        prompts, call = self._batch_call([self._chat_input(c) for c in conversations], kwargs)
        self._events(True, conversations, kwargs)
        return self._events(True, conversations, kwargs, call, call.generate(prompts))

    @dispatcher.span
    async def abatch_chat(self, conversations: Sequence[Sequence[ChatMessage]], **kwargs: Any) -> list[ChatResponse]:
        """`batch_chat` without blocking the event loop."""
        prompts, call = await off_loop(self._batch_call, [self._chat_input(c) for c in conversations], kwargs)
        self._events(True, conversations, kwargs)
        return self._events(True, conversations, kwargs, call, await call.agenerate(prompts))

    def _batch_call(self, inputs: list[tuple[Any, dict[str, Any]]], kwargs: dict[str, Any]) -> tuple[list[Any], Call]:
        return [prompt for prompt, _ in inputs], self._call(inputs[0][1] if inputs else {}, kwargs)

    def _events(
        self,
        chat: bool,
        items: Sequence[Any],
        kwargs: dict[str, Any],
        call: Call | None = None,
        results: list[GenerationResult] | None = None,
    ) -> Any:
        """Start events (no results yet), or end events and the responses: one pair per prompt."""
        if call is None or results is None:
            payload = self.to_payload()
            for item in items:
                dispatcher.event(
                    events.LLMChatStartEvent(messages=list(item), additional_kwargs=kwargs, model_dict=payload)
                    if chat
                    else events.LLMCompletionStartEvent(prompt=item, additional_kwargs=kwargs, model_dict=payload)
                )
            return None
        responses = [_response(chat, r.text, call.describe(r)) for r in results]
        for item, response in zip(items, responses, strict=True):
            dispatcher.event(
                events.LLMChatEndEvent(messages=list(item), response=response)
                if chat
                else events.LLMCompletionEndEvent(prompt=item, response=response)
            )
        return responses


# ====================================================================== responses
#: The finish reason of an answer whose token budget ended before its constraint was complete.
INCOMPLETE = "constraint_incomplete"


class StructuredOutputError(ValueError):
    """A structured answer that is not a complete `output_cls`: its token budget ended first."""


def parse_structured(output_cls: type[Model], response: ChatResponse) -> Model:
    """The `output_cls` instance of a constrained answer; an answer cut by its token budget is a
    `StructuredOutputError` that says to raise `max_tokens` (never a silently repaired object)."""
    text = response.message.content or ""
    if response.raw.get("finish_reason") == INCOMPLETE:
        raise StructuredOutputError(
            f"the answer reached its token budget before the {output_cls.__name__} JSON was complete "
            f"(finish_reason '{INCOMPLETE}'); raise max_tokens. Text so far: {text!r}"
        )
    return output_cls.model_validate_json(text)


def _response(chat: bool, text: str, raw: dict[str, Any], delta: str | None = None) -> Any:
    usage = dict(raw.get("usage", {}))
    if chat:
        message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
        return ChatResponse(message=message, delta=delta, raw=raw, additional_kwargs=usage)
    return CompletionResponse(text=text, delta=delta, raw=raw, additional_kwargs=usage)


def _chunk(chat: bool, call: Call, delta: calls.Delta) -> Any:
    """A streamed response: cumulative text and delta; the last one's raw carries the full stats."""
    raw = call.describe(delta.result) if delta.result is not None else {}
    if delta.segment is not None:
        raw["segment"] = calls.segment_facts(delta.segment)
    return _response(chat, delta.so_far, raw, delta.text)


def _message_dict(message: ChatMessage) -> dict[str, str]:
    role = _ROLE_NAMES.get(message.role, message.role.value if isinstance(message.role, MessageRole) else message.role)
    return {"role": str(role), "content": message.content or ""}


def _many(prompts: Sequence[str]) -> Sequence[str]:
    if isinstance(prompts, str):
        raise TypeError("batch_complete takes a list of prompts; use complete() for one prompt")
    return prompts
