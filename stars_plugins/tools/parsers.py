"""Reading tool calls out of the text open models write: one parser per format, behind one registry.

- `hermes` (Hermes 2/3, Qwen2.5, Qwen3, the fallback prompt):
  `<tool_call>{"name": ..., "arguments": ...}</tool_call>`
- `llama3_json` (Llama 3.1-3.3): a JSON object `{"name": ..., "parameters": ...}`, optionally after
  `<|python_tag|>`, several separated by `;`
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": ...}, ...]` (and the newer `[TOOL_CALLS]name[ARGS]{...}`)

Backends decode with special tokens skipped, so a marker that is a special token of the model
(`<|python_tag|>`, Mistral's `[TOOL_CALLS]`) may be absent from the text: each parser also reads
the bare form (a response that starts with the call's JSON).

Each parser splits text into content and raw calls (`scan`); `parse_tool_output` then checks every
call against the bound tools: a call that does not parse, names no bound tool or whose arguments
do not match the tool's JSON Schema is an `InvalidToolCall` with its raw text, never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from stars_plugins.errors import ToolSpecError
from stars_plugins.tools.outcomes import InvalidToolCall, ParsedToolOutput, ToolCall, call_id
from stars_plugins.tools.spec import ToolSpec, find_tool

_DECODER = json.JSONDecoder()
_NO_OBJECT = object()


@dataclass
class RawCall:
    """One call as written: its raw text and the decoded JSON (or why it does not decode)."""

    raw: str
    payload: Any = _NO_OBJECT
    error: str | None = None


@dataclass
class Scan:
    """A response split by a parser. With `final=False` (a stream still growing), `content` stops
    before anything that may begin a call, and only complete calls are listed."""

    content: str
    calls: list[RawCall] = field(default_factory=list)
    open_call: bool = False  # a call has started and is not complete yet (streaming only)


class ToolParser:
    """A tool-call format: how calls look in text, how to read them and how to write them."""

    name: str = ""
    markers: tuple[str, ...] = ()  # text that starts a call
    id_prefix: str = "call_"
    id_length: int = 24

    def scan(self, text: str, *, final: bool = True) -> Scan:
        raise NotImplementedError

    def format_call(self, name: str, arguments: dict[str, Any]) -> str:
        """One call as this format writes it (history in the fallback prompt, examples)."""
        raise NotImplementedError

    def format_calls(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
        return "\n".join(self.format_call(name, args) for name, args in calls)

    def forced_prefix(self, name: str | None) -> str:
        """The text written for the model when a call is required: the format's opening, and with a
        named function the name too (the model continues with the arguments)."""
        raise NotImplementedError

    def call_opening(self) -> str:
        """What is written for the model before a constrained call (the JSON follows)."""
        return ""

    def instructions(self) -> str:
        """How to call a function, for the fallback system prompt."""
        example = self.format_call("<function-name>", {"<argument>": "<value>"})
        return f"For each function call, write the function name and its JSON arguments exactly like this:\n{example}"


def _held_tail(text: str, markers: Sequence[str]) -> int:
    """Where a tail that may be the beginning of a marker starts (len(text) when none)."""
    for start in range(max(0, len(text) - max(map(len, markers), default=0)), len(text)):
        tail = text[start:]
        if any(m.startswith(tail) for m in markers):
            return start
    return len(text)


def _decode_object(body: str) -> RawCall:
    stripped = body.strip()
    try:
        payload, end = _DECODER.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return RawCall(body, error=f"not valid JSON: {exc.msg} at character {exc.pos}")
    if stripped[end:].strip():
        return RawCall(body, error=f"unexpected text after the call's JSON: {stripped[end:].strip()[:40]!r}")
    return RawCall(body, payload)


class HermesParser(ToolParser):
    name = "hermes"
    markers = ("<tool_call>",)
    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def scan(self, text: str, *, final: bool = True) -> Scan:
        content, calls, pos = [], [], 0
        while True:
            start = text.find(self.OPEN, pos)
            if start < 0:
                rest = text[pos:]
                content.append(rest if final else rest[: _held_tail(rest, self.markers)])
                return Scan("".join(content), calls)
            content.append(text[pos:start])
            body_start = start + len(self.OPEN)
            end = text.find(self.CLOSE, body_start)
            if end < 0:
                if not final:
                    return Scan("".join(content), calls, open_call=True)
                calls.append(_with_raw(_decode_object(text[body_start:]), text[start:]))
                return Scan("".join(content), calls)
            calls.append(_with_raw(_decode_object(text[body_start:end]), text[start : end + len(self.CLOSE)]))
            pos = end + len(self.CLOSE)

    def format_call(self, name: str, arguments: dict[str, Any]) -> str:
        return f"{self.OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{self.CLOSE}"

    def call_opening(self) -> str:
        return f"{self.OPEN}\n"

    def forced_prefix(self, name: str | None) -> str:
        if name is None:
            return f'{self.OPEN}\n{{"name": "'
        return f'{self.OPEN}\n{{"name": {json.dumps(name)}, "arguments": '

    def instructions(self) -> str:
        return (
            "For each function call, return a JSON object with the function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )


def _with_raw(call: RawCall, raw: str) -> RawCall:
    call.raw = raw
    return call


class _JsonSequenceParser(ToolParser):
    """Formats whose calls are JSON written from a point on (after a marker, or at the start)."""

    def _calls_start(self, text: str, *, final: bool) -> tuple[int, int] | str | None:
        """(content end, calls start), None when the text has no calls, 'hold' when it may still begin one."""
        raise NotImplementedError

    def scan(self, text: str, *, final: bool = True) -> Scan:
        where = self._calls_start(text, final=final)
        if where == "hold":
            return Scan("", open_call=False)
        if where is None:
            return Scan(text if final else text[: _held_tail(text, self.markers)])
        assert isinstance(where, tuple)
        content_end, pos = where
        calls, open_call, tail = self._read_calls(text, pos, final=final)
        return Scan(text[:content_end] + tail, calls, open_call)

    def _read_calls(self, text: str, pos: int, *, final: bool) -> tuple[list[RawCall], bool, str]:
        raise NotImplementedError


class Llama3JsonParser(_JsonSequenceParser):
    name = "llama3_json"
    markers = ("<|python_tag|>",)

    def _calls_start(self, text: str, *, final: bool) -> tuple[int, int] | str | None:
        tag = text.find(self.markers[0])
        if tag >= 0:
            return tag, tag + len(self.markers[0])
        stripped = text.lstrip()
        if stripped.startswith("{"):
            return 0, len(text) - len(stripped)
        if not final and (not stripped or self.markers[0].startswith(stripped)):
            return "hold"
        return None

    def _read_calls(self, text: str, pos: int, *, final: bool) -> tuple[list[RawCall], bool, str]:
        calls: list[RawCall] = []
        while True:
            while pos < len(text) and (text[pos].isspace() or text[pos] == ";"):
                pos += 1
            if pos >= len(text):
                return calls, False, ""
            if text[pos] != "{":
                return calls, False, text[pos:]  # text after the calls stays content
            try:
                payload, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if not final:
                    return calls, True, ""
                calls.append(RawCall(text[pos:], error=f"not valid JSON: {exc.msg}"))
                return calls, False, ""
            calls.append(RawCall(text[pos:end], payload))
            pos = end

    def format_call(self, name: str, arguments: dict[str, Any]) -> str:
        return json.dumps({"name": name, "parameters": arguments}, ensure_ascii=False)

    def format_calls(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
        return "; ".join(self.format_call(name, args) for name, args in calls)

    def forced_prefix(self, name: str | None) -> str:
        return '{"name": "' if name is None else f'{{"name": {json.dumps(name)}, "parameters": '

    def instructions(self) -> str:
        return (
            "To call a function, respond only with a JSON object in the format "
            '{"name": function name, "parameters": dictionary of argument name and its value}. '
            "Do not use variables."
        )


class MistralParser(_JsonSequenceParser):
    name = "mistral"
    markers = ("[TOOL_CALLS]",)
    id_prefix = ""
    id_length = 9
    _BARE = re.compile(r'\s*\[\s*\{\s*"name"')

    def _calls_start(self, text: str, *, final: bool) -> tuple[int, int] | str | None:
        tag = text.find(self.markers[0])
        if tag >= 0:
            return tag, tag + len(self.markers[0])
        if self._BARE.match(text):
            return 0, 0
        stripped = text.lstrip()
        if not final and (
            not stripped or self.markers[0].startswith(stripped) or '[{"name"'.startswith(stripped.replace(" ", ""))
        ):
            return "hold"
        return None

    def _read_calls(self, text: str, pos: int, *, final: bool) -> tuple[list[RawCall], bool, str]:
        calls: list[RawCall] = []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if text.startswith(self.markers[0], pos):
                pos += len(self.markers[0])
                continue
            if pos >= len(text):
                return calls, False, ""
            if text[pos] == "[":  # v3: a JSON list of calls
                try:
                    payload, end = _DECODER.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    if not final:
                        return calls, True, ""
                    calls.append(RawCall(text[pos:], error=f"not valid JSON: {exc.msg}"))
                    return calls, False, ""
                if isinstance(payload, list):
                    calls.extend(RawCall(json.dumps(item, ensure_ascii=False), item) for item in payload)
                else:
                    calls.append(RawCall(text[pos:end], error="expected a JSON list of calls"))
                pos = end
                continue
            args_at = text.find("[ARGS]", pos)  # v11+: name[ARGS]{...}
            if args_at < 0:
                if not final:
                    return calls, True, ""
                calls.append(RawCall(text[pos:], error="expected [ARGS] after the function name"))
                return calls, False, ""
            name = text[pos:args_at].strip()
            try:
                arguments, end = _DECODER.raw_decode(text, args_at + len("[ARGS]"))
            except json.JSONDecodeError as exc:
                if not final:
                    return calls, True, ""
                calls.append(RawCall(text[pos:], {"name": name}, error=f"arguments are not valid JSON: {exc.msg}"))
                return calls, False, ""
            calls.append(RawCall(text[pos:end], {"name": name, "arguments": arguments}))
            pos = end

    def format_call(self, name: str, arguments: dict[str, Any]) -> str:
        return f"[TOOL_CALLS]{json.dumps([{'name': name, 'arguments': arguments}], ensure_ascii=False)}"

    def format_calls(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
        items = [{"name": name, "arguments": args} for name, args in calls]
        return f"[TOOL_CALLS]{json.dumps(items, ensure_ascii=False)}"

    def forced_prefix(self, name: str | None) -> str:
        return (
            '[TOOL_CALLS][{"name": "' if name is None else f'[TOOL_CALLS][{{"name": {json.dumps(name)}, "arguments": '
        )

    def instructions(self) -> str:
        return (
            "To call functions, write [TOOL_CALLS] followed by a JSON list of calls: "
            '[TOOL_CALLS][{"name": <function-name>, "arguments": <args-json-object>}]'
        )


#: Parsers by name; `TOOL_PARSER_ALIASES` adds the model families' names.
TOOL_PARSERS: dict[str, ToolParser] = {p.name: p for p in (HermesParser(), Llama3JsonParser(), MistralParser())}
TOOL_PARSER_ALIASES = {"qwen": "hermes", "qwen2.5": "hermes", "llama3": "llama3_json", "llama": "llama3_json"}


def get_tool_parser(name: str) -> ToolParser:
    """The parser registered under `name` (or an alias); `ToolSpecError` listing them otherwise."""
    key = TOOL_PARSER_ALIASES.get(name, name)
    if key not in TOOL_PARSERS:
        raise ToolSpecError(
            f"unknown tool_parser {name!r}; available: {', '.join(sorted([*TOOL_PARSERS, *TOOL_PARSER_ALIASES]))}"
        )
    return TOOL_PARSERS[key]


def detect_tool_parser(chat_template: str | None) -> ToolParser:
    """The format a chat template teaches its model, read from the template's text: `<tool_call>`
    (Hermes, Qwen), `[TOOL_CALLS]` (Mistral), `<|python_tag|>` or Llama's `"parameters"` JSON
    instruction (Llama 3.x). Anything else (no tool support, the fallback prompt): hermes."""
    template = chat_template or ""
    if "[TOOL_CALLS]" in template:
        return TOOL_PARSERS["mistral"]
    if "<tool_call>" in template:
        return TOOL_PARSERS["hermes"]
    if "<|python_tag|>" in template or '"parameters": dictionary of argument name' in template:
        return TOOL_PARSERS["llama3_json"]
    return TOOL_PARSERS["hermes"]


def check_call(raw: RawCall, tools: Sequence[ToolSpec], ident: str) -> ToolCall | InvalidToolCall:
    """A raw call checked against the bound tools (name among them, arguments valid for its schema)."""
    payload = raw.payload
    name = payload.get("name") if isinstance(payload, dict) and isinstance(payload.get("name"), str) else None
    if raw.error is not None:
        return InvalidToolCall(ident, name, raw.raw, raw.error)
    if not isinstance(payload, dict):
        return InvalidToolCall(ident, None, raw.raw, "a call must be a JSON object with 'name' and 'arguments'")
    if name is None:
        return InvalidToolCall(ident, None, raw.raw, "the call has no function 'name'")
    tool = find_tool(tools, name)
    if tool is None:
        return InvalidToolCall(ident, name, raw.raw, f"unknown tool {name!r}; bound tools: {[t.name for t in tools]}")
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return InvalidToolCall(ident, name, raw.raw, f"arguments are not valid JSON: {exc.msg}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return InvalidToolCall(ident, name, raw.raw, f"arguments must be a JSON object, got {type(arguments).__name__}")
    error = next(iter(sorted(Draft202012Validator(tool.parameters).iter_errors(arguments), key=str)), None)
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "arguments"
        return InvalidToolCall(
            ident, name, raw.raw, f"arguments do not match the schema of {name!r} at {where}: {error.message}"
        )
    return ToolCall(ident, name, arguments)


def parse_tool_output(
    text: str,
    tools: Sequence[ToolSpec],
    parser: ToolParser | str = "hermes",
    *,
    seed: Any = 0,
    final: bool = True,
    parallel_tool_calls: bool = True,
) -> ParsedToolOutput:
    """Split `text` into content and calls checked against `tools`. `seed` makes call ids differ
    between requests and agree between a stream and its final result. With `final=False` (a
    growing stream) only complete calls are read and content that may begin a call is held back.
    With `parallel_tool_calls=False`, calls after the first are invalid (reported, not dropped)."""
    parser = get_tool_parser(parser) if isinstance(parser, str) else parser
    scan = parser.scan(text, final=final)
    checked: list[ToolCall | InvalidToolCall] = []
    for index, raw in enumerate(scan.calls):
        ident = call_id(seed, index, raw.raw, length=parser.id_length, prefix=parser.id_prefix)
        call = check_call(raw, tools, ident)
        if not parallel_tool_calls and index > 0 and isinstance(call, ToolCall):
            call = InvalidToolCall(ident, call.name, raw.raw, "a second call while parallel_tool_calls is off")
        checked.append(call)
    return ParsedToolOutput(
        content=scan.content.strip() if final else scan.content,
        tool_calls=tuple(c for c in checked if isinstance(c, ToolCall)),
        invalid_tool_calls=tuple(c for c in checked if isinstance(c, InvalidToolCall)),
        calls_in_order=tuple(checked),
    )
