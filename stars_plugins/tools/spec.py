"""Tool specifications (OpenAI function specs) and `tool_choice`, validated once per call."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stars_plugins.errors import ToolSpecError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

#: The `tool_choice` values besides a function name.
TOOL_CHOICE_MODES = ("auto", "none", "required")


class ToolSpec(BaseModel):
    """One function the model may call: its name, what it does, and its arguments' JSON Schema
    (an object schema; `{}` or no properties for a function without arguments)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Function name (letters, digits, _ . -; at most 64 characters).")
    description: str = Field("", description="What the function does, shown to the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"tool name {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("parameters")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return {"type": "object", "properties": {}}
        if value.get("type", "object") != "object":
            raise ValueError(f"parameters must be an object schema (type 'object'), got type {value.get('type')!r}")
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"parameters is not a valid JSON Schema: {exc.message}") from None
        return value

    def __hash__(self) -> int:
        return hash((self.name, self.description, json.dumps(self.parameters, sort_keys=True)))

    @classmethod
    def from_openai(cls, spec: Mapping[str, Any]) -> ToolSpec:
        """From OpenAI's tool format `{"type": "function", "function": {name, description, parameters}}`
        (the inner `function` object alone is accepted too)."""
        if not isinstance(spec, Mapping):
            raise ToolSpecError(f"a tool is a mapping in OpenAI's format, got {type(spec).__name__}")
        if spec.get("type", "function") != "function":
            raise ToolSpecError(f"only tools of type 'function' are supported, got type {spec.get('type')!r}")
        if "function" in spec:
            inner = spec["function"]
        else:
            inner = spec
        if not isinstance(inner, Mapping) or "name" not in inner:
            raise ToolSpecError("a tool needs a 'function' object with at least a 'name'")
        known = {"name", "description", "parameters", "strict"}
        unknown = set(inner) - known
        if unknown:
            raise ToolSpecError(
                f"tool {inner.get('name')!r} has unknown field(s) {sorted(unknown)}; accepted: {sorted(known)}"
            )
        try:
            return cls(
                name=inner["name"],
                description=inner.get("description") or "",
                parameters=dict(inner.get("parameters") or {}),
            )
        except ValueError as exc:
            raise ToolSpecError(f"invalid tool {inner.get('name')!r}: {_first_error(exc)}") from None

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's tool format, as chat templates (`apply_chat_template(tools=...)`) expect it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
    return str(exc)


def tool_specs(tools: Any) -> tuple[ToolSpec, ...]:
    """Tools of a call as `ToolSpec`s: each a `ToolSpec` or a mapping in OpenAI's format. Raises
    `ToolSpecError` for anything else and for two tools with one name."""
    if tools is None:
        return ()
    if isinstance(tools, Mapping | str | bytes) or not isinstance(tools, Sequence):
        raise ToolSpecError(f"tools must be a list of tool specs, got {type(tools).__name__}")
    specs = tuple(t if isinstance(t, ToolSpec) else ToolSpec.from_openai(t) for t in tools)
    names = [t.name for t in specs]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ToolSpecError(f"tool name(s) {doubled} appear more than once; each tool needs its own name")
    return specs


def tool_choice_name(choice: Any) -> str:
    """`tool_choice` as one string: a mode or a function name. Accepts OpenAI's
    `{"type": "function", "function": {"name": ...}}` for a named function."""
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if choice.get("type") == "function" and isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return function["name"]
        raise ToolSpecError('tool_choice as a mapping must be {"type": "function", "function": {"name": ...}}')
    if not isinstance(choice, str) or not choice:
        raise ToolSpecError(f"tool_choice must be 'auto', 'none', 'required' or a function name, got {choice!r}")
    return choice


def check_tool_choice(choice: str, tools: Sequence[ToolSpec]) -> None:
    """Raise `ToolSpecError` for a choice that cannot be met by the bound tools."""
    if choice in TOOL_CHOICE_MODES:
        if choice == "required" and not tools:
            raise ToolSpecError("tool_choice='required' needs at least one tool; pass tools=[...]")
        return
    names = [t.name for t in tools]
    if choice not in names:
        raise ToolSpecError(
            f"tool_choice names {choice!r}, which is not among the bound tools {names}; "
            "use one of them or 'auto', 'none', 'required'"
        )


def find_tool(tools: Sequence[ToolSpec], name: str) -> ToolSpec | None:
    return next((t for t in tools if t.name == name), None)
