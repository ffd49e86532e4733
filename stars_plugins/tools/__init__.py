"""Tool calls: specs and `tool_choice` (`spec`), the formats open models write them in
(`parsers`), prompts with tools (`render`) and what a response's calls are (`outcomes`).

A call's tools are `StarsConfig` settings (`tools`, `tool_choice`, `tool_parser`,
`parallel_tool_calls`), so every surface passes them through the one request path; results carry
`tool_calls`, `invalid_tool_calls` and `content`. See docs/tools.md.
"""

from stars_plugins.tools.outcomes import InvalidToolCall, ParsedToolOutput, ToolCall
from stars_plugins.tools.parsers import (
    TOOL_PARSERS,
    ToolParser,
    detect_tool_parser,
    get_tool_parser,
    parse_tool_output,
)
from stars_plugins.tools.render import FALLBACK_TOOL_PROMPT, ToolPrompt, fallback_system_prompt, render_with_tools
from stars_plugins.tools.spec import TOOL_CHOICE_MODES, ToolSpec, tool_choice_name, tool_specs

__all__ = [
    "FALLBACK_TOOL_PROMPT",
    "TOOL_CHOICE_MODES",
    "TOOL_PARSERS",
    "InvalidToolCall",
    "ParsedToolOutput",
    "ToolCall",
    "ToolParser",
    "ToolPrompt",
    "ToolSpec",
    "detect_tool_parser",
    "fallback_system_prompt",
    "get_tool_parser",
    "parse_tool_output",
    "render_with_tools",
    "tool_choice_name",
    "tool_specs",
]
