"""OpenAI-style tool dicts for the tool tests: functions whose arguments are all required strings."""

from __future__ import annotations

from typing import Any


def string_tool(name: str, description: str, *arguments: str) -> dict[str, Any]:
    """`{"type": "function", "function": {...}}` with every argument a required string."""
    properties = {a: {"type": "string"} for a in arguments}
    parameters = {"type": "object", "properties": properties, "required": list(arguments)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


GET_WEATHER = string_tool("get_weather", "Get the current weather in a city", "city")
