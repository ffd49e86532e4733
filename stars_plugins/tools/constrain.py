"""Constrained tool calls: with `tool_choice` "required" or a function name, the call is decoded
under a JSON Schema built from the bound tools (the name among them, its arguments' schema), after
the format's opening (`<tool_call>`, `[TOOL_CALLS]`) is written for the model."""

from __future__ import annotations

from typing import Any

from stars_plugins.constraints import Constraint
from stars_plugins.errors import ConstraintError
from stars_plugins.tools.parsers import ToolParser
from stars_plugins.tools.render import ToolPrompt


def call_schema(tools: ToolPrompt, parser: ToolParser) -> dict[str, Any]:
    """The JSON Schema of one call in `parser`'s format (`{"name", "arguments"}`, Llama's
    `{"name", "parameters"}`), for the forced function or any bound tool; Mistral's format: a list."""
    key = "parameters" if parser.name == "llama3_json" else "arguments"
    chosen = [t for t in tools.tools if tools.forced_name in (None, t.name)]
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, key: t.parameters},
            "required": ["name", key],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    one = options[0] if len(options) == 1 else {"anyOf": options}
    if parser.name == "mistral":
        return {"type": "array", "items": one, "minItems": 1, **({} if tools.parallel_tool_calls else {"maxItems": 1})}
    return one


def call_constraint(tools: ToolPrompt, parser: ToolParser) -> Constraint:
    """A `Constraint` for one call (strict where the schemas allow it, else keywords the grammar
    engine cannot enforce are dropped and the parser's schema check catches them)."""
    schema = call_schema(tools, parser)
    try:
        return Constraint.json_schema(schema, strict=True)
    except ConstraintError:
        return Constraint.json_schema(schema, strict=False)
