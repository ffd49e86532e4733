"""`ChatStars`: a LangChain chat model that decodes with STARS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NoReturn

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from langchain_stars._settings import StarsSettings
from langchain_stars.structured import structured_output
from stars_plugins import GenerationResult, PromptError, calls
from stars_plugins.streams import closing_stream

#: LangChain message types -> chat-template roles.
ROLES = {"human": "user", "ai": "assistant", "system": "system", "developer": "system", "tool": "tool"}


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> `{"role", "content"}` dicts for the policy's chat template (text only)."""
    converted = []
    for position, message in enumerate(messages):
        role = message.role if isinstance(message, ChatMessage) else ROLES.get(message.type, message.type)
        blocks = [message.content] if isinstance(message.content, str) else message.content
        for block in blocks:
            if not isinstance(block, str) and not (isinstance(block, dict) and block.get("type") == "text"):
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise PromptError(f"message {position} holds a {kind!r} content block; ChatStars handles text only")
        text = "".join(b if isinstance(b, str) else str(b["text"]) for b in blocks)
        converted.append({"role": role, "content": text})
    return converted


class ToolCallingNotSupportedError(NotImplementedError):
    """`ChatStars` does not do tool calling; the message says what to use."""


def _unsupported(what: str) -> NoReturn:
    raise ToolCallingNotSupportedError(
        f"{what} is not supported by STARS chat (ChatStars). For schema-valid output use "
        "with_structured_output(schema) (constrained token by token). For agents: a tool-calling model runs "
        "the agent, and a tool drafts its text with an aligned ChatStars chain "
        "(see examples/langchain_agent_tool.py)."
    )


class ChatStars(StarsSettings, BaseChatModel):
    """STARS reward-guided decoding as a LangChain chat model (docs/langchain.md): messages go through
    the policy's chat template; the last streamed chunk carries usage and the STARS facts.
    `with_structured_output` holds the output to a schema token by token; tool calling raises
    `ToolCallingNotSupportedError`."""

    stream = closing_stream(BaseChatModel.stream)  # leaving a loop over a stream early cancels its request
    astream = closing_stream(BaseChatModel.astream)

    @property
    def _llm_type(self) -> str:
        return "stars-chat"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> NoReturn:
        _unsupported("Tool calling (bind_tools)")

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
        """Tokens the policy sees for these messages: the chat template applied, as in a call."""
        if tools:
            _unsupported("Counting tool schemas (tools=...)")
        prompt = to_chat_messages(messages)
        return len(calls.prompt_token_ids(self.runtime, prompt, self.stars_config())) if prompt else 0

    def _prompts(self, inputs: list[BaseMessage]) -> list[Any]:
        return [to_chat_messages(inputs)]

    def _prompt(self, input: list[BaseMessage]) -> Any:
        return to_chat_messages(input)

    def _output(self, results: list[GenerationResult], call: calls.Call) -> ChatResult:
        (result,) = results
        message = AIMessage(content=result.text, usage_metadata=_usage(result), response_metadata=_names(call))
        generation = ChatGeneration(message=message, generation_info=calls.result_facts(result))
        return ChatResult(generations=[generation], llm_output=_names(call))

    def _chunk(self, delta: calls.Delta, call: calls.Call) -> ChatGenerationChunk:
        if delta.result is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=delta.text))
        message = AIMessageChunk(
            content=delta.text,
            usage_metadata=_usage(delta.result),
            response_metadata=_names(call),
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
