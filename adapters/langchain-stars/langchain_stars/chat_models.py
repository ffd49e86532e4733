"""`ChatStars`: a LangChain chat model that decodes with STARS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage, ToolMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from langchain_stars._settings import StarsSettings
from langchain_stars._tools import (
    history_tool_calls,
    openai_tools,
    to_invalid_tool_calls,
    to_tool_call_chunks,
    to_tool_calls,
    tool_choice_mode,
)
from langchain_stars.structured import structured_output
from stars_plugins import GenerationResult, PromptError, calls
from stars_plugins.streams import closing_stream

#: LangChain message types -> chat-template roles.
ROLES = {"human": "user", "ai": "assistant", "system": "system", "developer": "system", "tool": "tool"}
#: Content blocks that repeat an `AIMessage`'s `tool_calls` (Anthropic's `tool_use`, LangChain v1's
#: `tool_call`): the calls are rendered from `tool_calls`, these blocks are skipped.
_CALL_BLOCKS = {"tool_use", "tool_call", "function_call", "server_tool_call"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages -> chat messages in OpenAI's format for the policy's chat template: text
    content; an `AIMessage`'s `tool_calls` as `tool_calls`; a `ToolMessage` as a `tool` turn with its
    `tool_call_id`. Images, audio and files raise `PromptError` (the policy reads text only)."""
    converted = []
    for position, message in enumerate(messages):
        role = message.role if isinstance(message, ChatMessage) else ROLES.get(message.type, message.type)
        blocks = [message.content] if isinstance(message.content, str) else message.content
        texts = []
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(block, str) or kind == "text":
                texts.append(block if isinstance(block, str) else str(block["text"]))
            elif not (isinstance(message, AIMessage) and kind in _CALL_BLOCKS):
                kind = kind or type(block).__name__
                raise PromptError(f"message {position} holds a {kind!r} content block; ChatStars handles text only")
        turn: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if isinstance(message, AIMessage) and message.tool_calls:
            turn["tool_calls"] = history_tool_calls(message)
        if isinstance(message, ToolMessage):
            turn["tool_call_id"] = message.tool_call_id
            if message.name:
                turn["name"] = message.name
        converted.append(turn)
    return converted


class ChatStars(StarsSettings, BaseChatModel):
    """STARS reward-guided decoding as a LangChain chat model (docs/langchain.md): messages go through
    the policy's chat template; the last streamed chunk carries usage and the STARS facts. Tools bound
    with `bind_tools` are rendered with the template (or the core's fallback prompt), calls come back in
    `AIMessage.tool_calls` / `invalid_tool_calls`, and the model can drive `langchain.agents.create_agent`.
    `with_structured_output` holds the output to a schema token by token."""

    stream = closing_stream(BaseChatModel.stream)  # leaving a loop over a stream early cancels its request
    astream = closing_stream(BaseChatModel.astream)

    @property
    def _llm_type(self) -> str:
        return "stars-chat"

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, pydantic classes, TypedDicts, functions or OpenAI tool dicts).

        `tool_choice`: None or "auto" (the model writes text or calls), "none", "any" / "required" /
        True (it must call one of them), or a tool's name (it must call that one). Forced calls are
        decoded under the tools' JSON Schemas by the core, so they always parse; every call is a
        segment the reward judges like text. `parallel_tool_calls=False` keeps one call per answer.
        """
        specs = openai_tools(tools, strict=strict)
        choice = tool_choice_mode(tool_choice, [s["function"]["name"] for s in specs])
        bound: dict[str, Any] = {"tools": specs, **kwargs}
        if choice is not None:
            bound["tool_choice"] = choice
        if parallel_tool_calls is not None:
            bound["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(**bound)

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable:
        """This model with its output held to `schema` token by token, parsed (docs/langchain.md).

        `schema`: a pydantic class (-> instances of it), a TypedDict or a JSON Schema dict (-> dicts).
        `method`: "json_schema" (the default: a `Constraint.json_schema`), "json_mode" (any JSON
        object; the schema only picks the parser) or "function_calling" (through `bind_tools`; a
        model without tool calling serves it as "json_schema", with a warning). `strict`: refuse
        schema keywords the grammar cannot enforce (the default) or drop them (False).
        `include_raw=True`: `{"raw", "parsed", "parsing_error"}`, never raising on a parse error.
        Other keyword arguments are call settings (`max_tokens=256`, `horizon=8`, ...). An answer
        whose token budget ends before the JSON does (finish reason `constraint_incomplete`) is a
        parse error that says to raise `max_tokens`."""
        return structured_output(self, schema, method=method, include_raw=include_raw, strict=strict, kwargs=kwargs)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Tokens the policy sees for these messages (and tools): the chat template applied, as in a call."""
        prompt = to_chat_messages(messages)
        if not prompt:
            return 0
        overrides = {"tools": openai_tools(tools)} if tools else {}
        return len(calls.prompt_token_ids(self.runtime, prompt, self.stars_config(**overrides)))

    def _prompts(self, inputs: list[BaseMessage]) -> list[Any]:
        return [to_chat_messages(inputs)]

    def _prompt(self, input: list[BaseMessage]) -> Any:
        return to_chat_messages(input)

    def _output(self, results: list[GenerationResult], call: calls.Call) -> ChatResult:
        (result,) = results
        message = AIMessage(
            content=result.text if result.content is None else result.content,
            tool_calls=to_tool_calls(result.tool_calls),
            invalid_tool_calls=to_invalid_tool_calls(result.invalid_tool_calls),
            usage_metadata=_usage(result),
            response_metadata={**_names(call), "finish_reason": result.finish_reason},
        )
        generation = ChatGeneration(message=message, generation_info=calls.result_facts(result))
        return ChatResult(generations=[generation], llm_output=_names(call))

    def _chunk(self, delta: calls.Delta, call: calls.Call) -> ChatGenerationChunk:
        """A streamed piece: accepted text, and each tool call once it is complete and accepted (a
        `tool_call_chunks` entry holding the whole call); the last chunk carries usage and the facts."""
        new_calls = to_tool_call_chunks(delta.tool_calls)
        if delta.result is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=delta.text, tool_call_chunks=new_calls))
        message = AIMessageChunk(
            content=delta.text,
            tool_call_chunks=new_calls,
            usage_metadata=_usage(delta.result),
            response_metadata={**_names(call), "finish_reason": delta.result.finish_reason},
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message, generation_info=calls.result_facts(delta.result))


def _usage(result: GenerationResult) -> UsageMetadata:
    usage = calls.token_usage([result])
    return UsageMetadata(
        input_tokens=usage["prompt_tokens"],
        output_tokens=usage["completion_tokens"],
        total_tokens=usage["total_tokens"],
    )


def _names(call: calls.Call) -> dict[str, Any]:
    return {"model_name": call.runtime.model_name, "reward_model": call.reward_name}
