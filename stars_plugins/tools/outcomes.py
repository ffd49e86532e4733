"""What parsing a response finds: valid tool calls, invalid ones (kept with their raw text), content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """A call the model made that names a bound tool and whose arguments match its JSON Schema."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's `tool_calls` item (arguments as a JSON string)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass(frozen=True)
class InvalidToolCall:
    """A call the model began but that does not parse, names no bound tool, or whose arguments do
    not match the tool's schema: an explicit outcome with the raw text and the reason."""

    id: str
    name: str | None
    raw: str
    error: str


@dataclass(frozen=True)
class ParsedToolOutput:
    """A response split into text outside calls (`content`) and its calls, in order of appearance."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    invalid_tool_calls: tuple[InvalidToolCall, ...] = ()
    calls_in_order: tuple[ToolCall | InvalidToolCall, ...] = field(default=(), repr=False)


def call_id(seed: Any, index: int, raw: str, *, length: int = 24, prefix: str = "call_") -> str:
    """A call id that is the same for the same call of the same request (so streamed and final
    results agree), and differs between requests (`seed`: the request's seed)."""
    digest = hashlib.sha256(f"{seed}:{index}:{raw}".encode()).hexdigest()
    if not prefix:  # Mistral's templates require 9 alphanumeric characters
        return "".join(c for c in digest if c.isalnum())[:length]
    return prefix + digest[:length]
