"""LangChain's tool-calling vocabulary <-> the core's (`stars_plugins.tools`), translated once.

LangChain tools, pydantic classes, TypedDicts and functions become OpenAI tool specs here
(`convert_to_openai_tool`); `tool_choice` in LangChain's spellings becomes the core's mode or function
name; the core's `ToolCall` / `InvalidToolCall` become LangChain's `tool_calls`, `invalid_tool_calls`
and streamed `tool_call_chunks`. Nothing here decides how a call is rendered, decoded or parsed: the
core does that, once for every surface.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.utils.function_calling import convert_to_openai_tool

from stars_plugins.errors import ToolSpecError
from stars_plugins.tools import ToolCall as CoreToolCall
from stars_plugins.tools import ToolSpec, tool_choice_name

#: LangChain's spellings of "call some tool" (`"any"` is LangChain's and Anthropic's; True is ChatOpenAI's).
_REQUIRED = {"any", "required"}


def openai_tools(tools: Sequence[Any], *, strict: bool | None = None) -> list[dict[str, Any]]:
    """Each tool (a `BaseTool`, a pydantic class, a TypedDict, a function or a tool dict) as an OpenAI
    function spec, checked by the core now (a bad schema fails at `bind_tools`, not at the first call)."""
    if isinstance(tools, Mapping | str) or not isinstance(tools, Sequence):
        raise ToolSpecError(f"bind_tools takes a list of tools, got {type(tools).__name__}")
    specs = []
    for tool in tools:
        spec = convert_to_openai_tool(tool, strict=strict)
        if spec.get("type") != "function":
            raise ToolSpecError(
                f"tool {spec.get('name') or spec.get('type')!r} is a provider built-in tool ({spec.get('type')!r}); "
                "ChatStars runs function tools only"
            )
        ToolSpec.from_openai(spec)  # the core's checks: name, object schema, valid JSON Schema
        specs.append(spec)
    # Two tools with one name fail at the call (the core's check), not here: LangChain's standard
    # tests bind a pydantic class next to its own JSON Schema and expect bind_tools to accept it.
    return specs


def tool_choice_mode(choice: Any, names: Sequence[str]) -> str | None:
    """LangChain's `tool_choice` -> the core's: None (the model's own choice, "auto"), "auto", "none",
    "required" (also "any" and True), or the name of a bound tool (also OpenAI's and Anthropic's
    dicts). A name that is not bound raises `ToolSpecError` listing the bound ones."""
    if choice is None:
        return None
    if choice is True:
        return "required"
    if choice is False:
        return "none"
    if isinstance(choice, Mapping) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        choice = choice["name"]  # Anthropic's {"type": "tool", "name": ...}
    elif isinstance(choice, Mapping) and choice.get("type") in _REQUIRED:
        choice = "required"  # Anthropic's {"type": "any"}
    mode = tool_choice_name(choice)
    if mode in _REQUIRED:
        if not names:
            raise ToolSpecError("tool_choice='any' needs at least one bound tool")
        return "required"
    if mode in ("auto", "none") or mode in names:
        return mode
    raise ToolSpecError(
        f"tool_choice names {mode!r}, which is not among the bound tools {list(names)}; "
        "use one of them, 'auto', 'none' or 'any'"
    )


def to_tool_calls(calls: Sequence[Any]) -> list[ToolCall]:
    """The core's `ToolCall`s as LangChain's `tool_calls` entries."""
    return [ToolCall(name=c.name, args=dict(c.arguments), id=c.id, type="tool_call") for c in calls]


def to_invalid_tool_calls(calls: Sequence[Any]) -> list[InvalidToolCall]:
    """The core's `InvalidToolCall`s (text that did not parse or did not match its schema) as
    LangChain's `invalid_tool_calls`: `args` is the raw text the model wrote, `error` says why."""
    return [InvalidToolCall(name=c.name, args=c.raw, id=c.id, error=c.error, type="invalid_tool_call") for c in calls]


def to_tool_call_chunks(calls: Sequence[Any]) -> list[ToolCallChunk]:
    """Calls completed in one streamed delta (the core's `ToolCall`s and `InvalidToolCall`s, in
    order), each as one whole `tool_call_chunks` entry: a valid call's arguments as JSON text, an
    invalid call's raw text (which LangChain then keeps in `invalid_tool_calls`). No `index`: each
    chunk is a whole call, so adding chunks appends calls instead of merging their pieces."""
    return [
        ToolCallChunk(
            name=c.name,
            args=json.dumps(c.arguments, ensure_ascii=False) if isinstance(c, CoreToolCall) else c.raw,
            id=c.id,
            index=None,
            type="tool_call_chunk",
        )
        for c in calls
    ]


def history_tool_calls(message: Any) -> list[dict[str, Any]]:
    """An `AIMessage`'s tool calls in OpenAI's message format (arguments as JSON text)."""
    return [
        {
            "id": call.get("id") or f"call_{position}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {}, ensure_ascii=False)},
        }
        for position, call in enumerate(message.tool_calls)
    ]
