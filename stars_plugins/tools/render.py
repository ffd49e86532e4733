"""Prompts with tools: the policy's chat template where it renders tools and tool-call history,
else a documented fallback (a Hermes-style system prompt and calls written as text).

Whether a template supports tools is checked on the rendered text itself: every bound tool's name,
every earlier call's name and every tool result must appear in it. A template that silently drops
them (the embedded SmolLM2-135M template does) or raises on them gets the fallback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stars_plugins.tools.parsers import ToolParser, detect_tool_parser, get_tool_parser
from stars_plugins.tools.spec import ToolSpec

#: The fallback system prompt (Hermes 2 Pro's function-calling prompt, the format most open
#: models are tuned on). `{tools}`: one JSON spec per line; `{instructions}`: the call format;
#: `{choice}`: what `tool_choice` and `parallel_tool_calls` ask for.
FALLBACK_TOOL_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user query. "
    "Don't make assumptions about what values to plug into functions. Here are the available tools:\n"
    "<tools>\n{tools}\n</tools>\n{instructions}{choice}"
)


@dataclass(frozen=True)
class ToolPrompt:
    """The tool settings of one prompt (a slice of `StarsConfig`)."""

    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    tool_parser: str | None = None
    parallel_tool_calls: bool = True
    constrained: bool = False  # the call is decoded under a constraint: only the format's opening is written

    @property
    def active(self) -> bool:
        """Tools are offered to the model and its calls are read."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forced_name(self) -> str | None:
        """The function every answer calls: a named choice, or `required` with a single tool."""
        if self.tool_choice not in ("auto", "none", "required"):
            return self.tool_choice
        if self.tool_choice == "required" and len(self.tools) == 1:
            return self.tools[0].name
        return None

    @property
    def must_call(self) -> bool:
        return self.active and self.tool_choice != "auto"

    def parser_for(self, chat_template: str | None) -> ToolParser:
        """The format calls are read in: the named `tool_parser`, else the template's."""
        return get_tool_parser(self.tool_parser) if self.tool_parser else detect_tool_parser(chat_template)


@dataclass(frozen=True)
class RenderedTools:
    text: str  # the prompt text, generation prompt and any forced call opening included
    response_prefix: str  # the forced opening of a call ("" unless a call is required)
    native: bool  # the chat template rendered the tools itself (False: the fallback)
    parser: ToolParser


def has_tool_content(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(m.get("tool_calls") or m["role"] == "tool" for m in messages)


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as Hugging Face chat templates expect them: an assistant's `tool_calls` with
    arguments as dicts (OpenAI sends JSON strings), content "" where OpenAI allows null."""
    out = []
    names: dict[str, str] = {}  # call id -> function name, for tool results that do not say it
    for m in messages:
        for c in m.get("tool_calls") or ():
            names[c["id"]] = c["function"]["name"]
    for m in messages:
        message: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                }
                for c in m["tool_calls"]
            ]
        for key in ("tool_call_id", "name"):
            if m.get(key):
                message[key] = m[key]
        if m["role"] == "tool" and "name" not in message and m.get("tool_call_id") in names:
            message["name"] = names[m["tool_call_id"]]  # Hermes' template requires it
        out.append(message)
    return out


def render_with_tools(tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: ToolPrompt) -> RenderedTools:
    """The prompt text for `messages` (normalized, see `prompts.normalize_messages`) with `tools`."""
    template = getattr(tokenizer, "chat_template", None)
    parser = tools.parser_for(template)
    msgs = template_messages(messages)
    specs = [t.to_openai() for t in tools.tools] if tools.active else None
    text = _native(tokenizer, msgs, specs)
    native = text is not None
    if text is None:
        text = _fallback(tokenizer, msgs, tools, parser)
    prefix = ""
    if tools.must_call:
        prefix = parser.call_opening() if tools.constrained else parser.forced_prefix(tools.forced_name)
    return RenderedTools(text + prefix, prefix, native, parser)


def _native(tokenizer: Any, msgs: list[dict[str, Any]], specs: list[dict[str, Any]] | None) -> str | None:
    if not getattr(tokenizer, "chat_template", None) or not _renders_tools(tokenizer, msgs, specs):
        return None
    try:
        return tokenizer.apply_chat_template(msgs, tools=specs, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja raises on what a template does not support (roles, several calls)
        return None


def _renders_tools(tokenizer: Any, msgs: list[dict[str, Any]], specs: list[dict[str, Any]] | None) -> bool:
    """Whether the template writes every tool, every earlier call (name and arguments) and every
    tool result of this conversation: rendered once with unique probe values in their places
    (a name the user also typed must not pass for a rendered call)."""
    probes: list[str] = []

    def probe(kind: str) -> str:
        probes.append(f"zq{kind}{len(probes)}x")
        return probes[-1]

    probe_specs = None
    if specs:
        probe_specs = [
            {**s, "function": {**s["function"], "name": probe("tool"), "description": probe("doc")}} for s in specs
        ]
    names: dict[str, str] = {}
    probe_msgs = []
    for m in msgs:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                names[c["function"]["name"]] = names.get(c["function"]["name"]) or probe("fn")
                arguments = {"a": probe("arg")}
                calls.append({**c, "function": {"name": names[c["function"]["name"]], "arguments": arguments}})
            m["tool_calls"] = calls
        if m["role"] == "tool":
            m["content"] = probe("result")
            if m.get("name"):
                m["name"] = names.get(m["name"], m["name"])
        probe_msgs.append(m)
    try:
        text = tokenizer.apply_chat_template(probe_msgs, tools=probe_specs, tokenize=False, add_generation_prompt=True)
    except Exception:
        return False
    return all(p in text for p in probes if not p.startswith("zqdoc"))


def fallback_system_prompt(tools: ToolPrompt, parser: ToolParser) -> str:
    """The fallback prompt for `tools` (see `FALLBACK_TOOL_PROMPT`)."""
    specs = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools.tools)
    choice = ""
    if tools.forced_name:
        choice = f"\nYou must call the function {tools.forced_name}."
    elif tools.tool_choice == "required":
        choice = "\nYou must call at least one function."
    if not tools.parallel_tool_calls:
        choice += "\nCall at most one function."
    return FALLBACK_TOOL_PROMPT.format(tools=specs, instructions=parser.instructions(), choice=choice)


def _fallback(tokenizer: Any, msgs: list[dict[str, Any]], tools: ToolPrompt, parser: ToolParser) -> str:
    converted = _calls_as_text(msgs, parser)
    if tools.active:
        prompt = fallback_system_prompt(tools, parser)
        if converted and converted[0]["role"] == "system":
            converted[0] = {"role": "system", "content": f"{converted[0]['content']}\n\n{prompt}"}
        else:
            converted.insert(0, {"role": "system", "content": prompt})
    if not getattr(tokenizer, "chat_template", None):
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in converted]
        return "\n".join([*lines, "Assistant:"])
    as_user = [{**m, "role": "user"} if m["role"] == "tool" else m for m in converted]
    variants = [converted, as_user, _system_into_user(as_user)]
    for variant in variants:  # the first the template renders in full
        try:
            text = tokenizer.apply_chat_template(variant, tokenize=False, add_generation_prompt=True)
        except Exception:
            continue
        if all(m["content"].strip()[:200] in text for m in variant):
            return text
    # a template that refuses the tool role and drops system messages: results and the tool
    # prompt go into user turns
    return tokenizer.apply_chat_template(variants[-1], tokenize=False, add_generation_prompt=True)


def _system_into_user(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that drop system messages: the system text opens the first user turn."""
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    rest = [m for m in msgs if m["role"] != "system"]
    first_user = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
    if not system or first_user is None:
        return msgs
    rest[first_user] = {**rest[first_user], "content": f"{system}\n\n{rest[first_user]['content']}"}
    return rest


def _calls_as_text(msgs: list[dict[str, Any]], parser: ToolParser) -> list[dict[str, Any]]:
    """History without template features: calls written in the parser's format, results wrapped
    in `<tool_response>` tags (Hermes' convention) under the `tool` role."""
    out = []
    for m in msgs:
        if m.get("tool_calls"):
            calls = parser.format_calls(
                [(c["function"]["name"], _arguments(c["function"]["arguments"])) for c in m["tool_calls"]]
            )
            content = f"{m['content']}\n{calls}" if m["content"] else calls
            out.append({"role": "assistant", "content": content})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": f"<tool_response>\n{m['content']}\n</tool_response>"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments
