"""`ChatStars`: a LangChain chat model that decodes with STARS.

    from langchain_stars import ChatStars
    chat = ChatStars(reward="sentiment", horizon=8, max_tokens=64)
    reply = chat.invoke([("system", "Be brief."), ("human", "Any tips for a rainy day?")])
    reply.content, reply.usage_metadata, reply.response_metadata["stats"]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from langchain_stars._settings import PreparedCall, StarsSettings, completion_tokens, generation_info
from langchain_stars._streaming import astream_deltas, stream_deltas
from stars_plugins import GenerationResult, PromptError

#: LangChain message types -> chat-template roles.
ROLES = {"human": "user", "ai": "assistant", "system": "system", "developer": "system", "tool": "tool"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> `{"role", "content"}` dicts for the policy's chat template (text only)."""
    converted = []
    for position, message in enumerate(messages):
        role = message.role if isinstance(message, ChatMessage) else ROLES.get(message.type, message.type)
        content = message.content
        if not isinstance(content, str):
            parts = []
            for block in content:
                if isinstance(block, str):
                    parts.append(block)
                elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                else:
                    kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                    raise PromptError(
                        f"message {position} holds a {kind!r} content block; ChatStars handles text only"
                    )
            content = "".join(parts)
        converted.append({"role": role, "content": content})
    return converted


def usage_metadata(result: GenerationResult) -> UsageMetadata:
    prompt, completion = result.stats.prompt_tokens, completion_tokens(result)
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


class ChatStars(StarsSettings, BaseChatModel):
    """STARS reward-guided decoding as a LangChain chat model.

    Messages go through the policy's chat template; `stream`/`astream` yield one chunk per accepted
    segment, the last one carrying `usage_metadata` and the STARS facts (`response_metadata`:
    finish_reason, reward, strategy, stats). Settings, per-call overrides and configurable fields work
    as for `StarsLLM`; all chains share one loaded policy.
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True
    )

    streaming: bool = Field(
        False, description="Make `invoke` stream internally, so callbacks receive every accepted segment."
    )

    @property
    def _llm_type(self) -> str:
        return "stars-chat"

    # ------------------------------------------------------------------ sync
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(stop, kwargs)
        (result,) = call.runtime.generate([to_chat_messages(messages)], call.config, reward=call.reward)
        return self._chat_result(result, call)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(stop, kwargs)
        deltas = stream_deltas(call.runtime, to_chat_messages(messages), call.config, call.reward)
        try:
            for text, result in deltas:
                chunk = self._chunk(text, result, call)
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            deltas.close()

    # ------------------------------------------------------------------ async
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = await self._aprepare(stop, kwargs)
        (result,) = await call.runtime.agenerate([to_chat_messages(messages)], call.config, reward=call.reward)
        return self._chat_result(result, call)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = await self._aprepare(stop, kwargs)
        deltas = astream_deltas(call.runtime, to_chat_messages(messages), call.config, call.reward)
        try:
            async for text, result in deltas:
                chunk = self._chunk(text, result, call)
                if run_manager:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            await deltas.aclose()

    # ------------------------------------------------------------------ helpers
    def _prepare(self, stop: list[str] | None, kwargs: dict[str, Any]) -> PreparedCall:
        kwargs = dict(kwargs)
        kwargs.pop("stream", None)  # LangChain's own switch between invoke and stream, already applied
        return self.prepare_call(stop, kwargs)

    async def _aprepare(self, stop: list[str] | None, kwargs: dict[str, Any]) -> PreparedCall:
        if self.runtime_loaded and kwargs.get("reward") is None:
            return self._prepare(stop, kwargs)
        return await asyncio.to_thread(self._prepare, stop, kwargs)  # may load a model: not on the loop

    def _chunk(self, text: str, result: GenerationResult | None, call: PreparedCall) -> ChatGenerationChunk:
        if result is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=text))
        message = AIMessageChunk(
            content=text,
            usage_metadata=usage_metadata(result),
            response_metadata={"model_name": call.runtime.model_name, "reward_model": call.reward_name},
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message, generation_info=generation_info(result))

    def _chat_result(self, result: GenerationResult, call: PreparedCall) -> ChatResult:
        message = AIMessage(
            content=result.text,
            usage_metadata=usage_metadata(result),
            response_metadata={"model_name": call.runtime.model_name, "reward_model": call.reward_name},
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=generation_info(result))],
            llm_output={"model_name": call.runtime.model_name, "reward_model": call.reward_name},
        )
