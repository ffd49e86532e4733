"""LlamaIndex's tool-calling vocabulary <-> the core's (`stars_plugins.tools`), translated once.

`FunctionTool`s become OpenAI tool specs (`tool.metadata.to_openai_tool()`); `tool_required` /
`tool_choice` become the core's mode or function name; chat history (assistant `ToolCallBlock`s,
`tool` turns with their `tool_call_id`) becomes chat messages in OpenAI's format; the core's
`ToolCall`s come back as `ToolCallBlock`s, its `InvalidToolCall`s in `additional_kwargs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from stars_plugins.errors import ToolSpecError
from stars_plugins.tools import tool_choice_name, tool_specs

_ROLE_NAMES = {MessageRole.DEVELOPER: "system", MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant"}
#: Where a response keeps the calls that did not parse or did not match their schema.
INVALID_CALLS_KEY = "invalid_tool_calls"


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LlamaIndex tools (anything with `.metadata.to_openai_tool()`) as OpenAI function specs,
    checked by the core now."""
    specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
    tool_specs(specs)  # the core's checks: names, object schemas, valid JSON Schema, no name twice
    return specs


def tool_choice_mode(tool_choice: Any, tool_required: bool, names: Sequence[str]) -> str:
    """LlamaIndex's `tool_choice` / `tool_required` -> the core's mode ("auto", "none", "required")
    or a bound tool's name (OpenAI's `{"type": "function", ...}` dict accepted)."""
    if tool_choice is None:
        return "required" if tool_required else "auto"
    mode = tool_choice_name(tool_choice)
    if mode in ("auto", "none", "required") or mode in names:
        return mode
    raise ToolSpecError(
        f"tool_choice names {mode!r}, which is not among the tools {list(names)}; "
        "use one of them, 'auto', 'none' or 'required'"
    )


def message_dict(message: ChatMessage) -> dict[str, Any]:
    """A LlamaIndex chat message as a chat message in OpenAI's format: text blocks as `content`,
    `ToolCallBlock`s (or OpenAI-style `additional_kwargs["tool_calls"]`) as `tool_calls`, and a tool
    turn's `additional_kwargs["tool_call_id"]` as its `tool_call_id`."""
    role = _ROLE_NAMES.get(message.role, message.role.value if isinstance(message.role, MessageRole) else message.role)
    texts = [b.text for b in message.blocks if isinstance(b, TextBlock)]
    turn: dict[str, Any] = {"role": str(role), "content": "\n".join(texts)}
    calls = [_block_call(b, i) for i, b in enumerate(b for b in message.blocks if isinstance(b, ToolCallBlock))]
    if not calls:
        calls = [_legacy_call(c, i) for i, c in enumerate(message.additional_kwargs.get("tool_calls") or [])]
    if calls:
        turn["tool_calls"] = calls
    if turn["role"] == "tool":
        call_id = message.additional_kwargs.get("tool_call_id")
        if call_id:
            turn["tool_call_id"] = str(call_id)
        if name := message.additional_kwargs.get("name"):
            turn["name"] = str(name)
    return turn


def _block_call(block: ToolCallBlock, position: int) -> dict[str, Any]:
    arguments = block.tool_kwargs if isinstance(block.tool_kwargs, str) else json.dumps(block.tool_kwargs)
    function = {"name": block.tool_name, "arguments": arguments}
    return {"id": block.tool_call_id or f"call_{position}", "type": "function", "function": function}


def _legacy_call(call: Any, position: int) -> dict[str, Any]:
    """An OpenAI `tool_calls` item, as a dict or as the openai client's object."""
    data = call.model_dump() if hasattr(call, "model_dump") else dict(call)
    function = data.get("function") or {}
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, Mapping):
        arguments = json.dumps(arguments)
    named = {"name": function.get("name") or "", "arguments": arguments}
    return {"id": data.get("id") or f"call_{position}", "type": "function", "function": named}


def response_message(text: str, valid: Sequence[Any], invalid: Sequence[Any]) -> ChatMessage:
    """An assistant message: the text outside calls, then one `ToolCallBlock` per valid call; invalid
    calls (raw text and reason) in `additional_kwargs["invalid_tool_calls"]`."""
    blocks: list[Any] = [TextBlock(text=text)]
    blocks += [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=dict(c.arguments)) for c in valid]
    extra = {INVALID_CALLS_KEY: [invalid_call_dict(c) for c in invalid]} if invalid else {}
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)


def invalid_call_dict(call: Any) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "raw": call.raw, "error": call.error}
