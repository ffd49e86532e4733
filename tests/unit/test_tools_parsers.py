"""Tool specs, tool_choice and the three call formats, without a model: each parser on the text
its model family writes, several calls per answer, content kept, and every broken call reported."""

from __future__ import annotations

import pytest

from stars_plugins.config import StarsConfig
from stars_plugins.errors import ConfigError, ToolSpecError
from stars_plugins.tools import InvalidToolCall, ToolCall, ToolSpec, get_tool_parser, parse_tool_output, tool_specs
from stars_plugins.tools.constrain import call_schema
from stars_plugins.tools.render import ToolPrompt

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
DELETE = {
    "type": "function",
    "function": {
        "name": "delete_files",
        "description": "Delete every file in a folder",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
}
TOOLS = tool_specs([WEATHER, DELETE])


# ---------------------------------------------------------------- specs and choices
def test_tool_spec_from_openai_and_back():
    spec = ToolSpec.from_openai(WEATHER)
    assert spec.name == "get_weather" and spec.parameters["required"] == ["city"]
    assert spec.to_openai() == WEATHER
    assert ToolSpec.from_openai(WEATHER["function"]) == spec  # the inner object alone


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"type": "retrieval"}, "type 'function'"),
        ({"type": "function", "function": {"description": "no name"}}, "'name'"),
        ({"type": "function", "function": {"name": "has space"}}, "must be 1-64"),
        ({"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}, "object schema"),
        (
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": 3}}},
            "JSON Schema",
        ),
        ({"type": "function", "function": {"name": "f", "params": {}}}, "unknown field"),
    ],
)
def test_bad_tool_specs_fail_early(bad, message):
    with pytest.raises(ToolSpecError, match=message):
        tool_specs([bad])


def test_tool_choice_is_checked_against_the_tools():
    assert (
        StarsConfig(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}).tool_choice
        == "get_weather"
    )
    with pytest.raises(ConfigError, match="not among the bound tools"):
        StarsConfig(tools=[WEATHER], tool_choice="send_email")
    with pytest.raises(ConfigError, match="needs at least one tool"):
        StarsConfig(tool_choice="required")
    with pytest.raises(ConfigError, match="more than once"):
        StarsConfig(tools=[WEATHER, WEATHER])
    with pytest.raises(ConfigError, match="unknown tool_parser"):
        StarsConfig(tools=[WEATHER], tool_parser="gemma")
    config = StarsConfig(tools=[WEATHER], tool_choice="required")
    assert config.updated(seed=3).tools == config.tools  # survives a validated copy


# ---------------------------------------------------------------- hermes / qwen
def test_hermes_several_calls_and_the_text_around_them():
    text = (
        "Let me check both.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    out = parse_tool_output(text, TOOLS, "hermes", seed=1)
    assert out.content == "Let me check both."
    assert [(c.name, c.arguments) for c in out.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "C"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert len({c.id for c in out.tool_calls}) == 2 and not out.invalid_tool_calls
    assert parse_tool_output(text, TOOLS, "hermes", seed=1).tool_calls == out.tool_calls  # ids are stable
    assert parse_tool_output(text, TOOLS, "hermes", seed=2).tool_calls[0].id != out.tool_calls[0].id


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Paris"', "not valid JSON"),
        ('{"name": "launch_rockets", "arguments": {}}', "unknown tool 'launch_rockets'"),
        ('{"name": "get_weather", "arguments": {"unit": "C"}}', "'city' is a required property"),
        ('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "K"}}', "at unit"),
        ('{"name": "get_weather", "arguments": [1]}', "must be a JSON object"),
        ('{"arguments": {}}', "no function 'name'"),
    ],
)
def test_hermes_broken_calls_are_reported_with_their_raw_text(body, error):
    text = f"ok <tool_call>\n{body}\n</tool_call>"
    out = parse_tool_output(text, TOOLS, "hermes")
    assert not out.tool_calls
    (bad,) = out.invalid_tool_calls
    assert isinstance(bad, InvalidToolCall) and error in bad.error
    assert body in bad.raw and out.content == "ok"


def test_hermes_unclosed_call_at_the_end_and_string_arguments():
    out = parse_tool_output('<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', TOOLS)
    assert out.tool_calls[0].arguments == {"city": "Rome"}


def test_parallel_tool_calls_off_reports_the_extra_calls():
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "%s"}}</tool_call>'
    text = call % "A" + call % "B"
    out = parse_tool_output(text, TOOLS, parallel_tool_calls=False)
    assert [c.arguments["city"] for c in out.tool_calls] == ["A"]
    assert "parallel_tool_calls" in out.invalid_tool_calls[0].error


def test_streaming_view_holds_back_a_call_until_it_is_complete():
    parser = get_tool_parser("hermes")
    assert parser.scan("Sure <tool_", final=False).content == "Sure "  # may begin a marker: held
    partial = parse_tool_output('Sure <tool_call>\n{"name": "get_weather", "argu', TOOLS, final=False)
    assert partial.content == "Sure " and not partial.calls_in_order
    done = parse_tool_output(
        'Sure <tool_call>{"name": "get_weather", "arguments": {"city": "X"}}</tool_call> and', TOOLS, final=False
    )
    assert [c.name for c in done.calls_in_order] == ["get_weather"] and done.content == "Sure  and"


# ---------------------------------------------------------------- llama 3.x
def test_llama3_json_calls_with_and_without_python_tag():
    out = parse_tool_output(
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Lima"}}', TOOLS, "llama3_json"
    )
    assert out.tool_calls[0].arguments == {"city": "Lima"} and out.content == ""
    two = parse_tool_output(
        '{"name": "get_weather", "parameters": {"city": "A"}}; '
        '{"name": "delete_files", "parameters": {"path": "/tmp"}}',
        TOOLS,
        "llama3",
    )
    assert [c.name for c in two.tool_calls] == ["get_weather", "delete_files"]
    text = parse_tool_output("It is sunny in Lima today.", TOOLS, "llama3_json")
    assert text.content == "It is sunny in Lima today." and not text.calls_in_order
    broken = parse_tool_output('{"name": "get_weather", "parameters": {"city": ', TOOLS, "llama3_json")
    assert broken.invalid_tool_calls and "not valid JSON" in broken.invalid_tool_calls[0].error


# ---------------------------------------------------------------- mistral
def test_mistral_list_bare_and_v11_forms():
    listed = parse_tool_output(
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Nice"}}, '
        '{"name": "delete_files", "arguments": {"path": "/x"}}]',
        TOOLS,
        "mistral",
    )
    assert [c.name for c in listed.tool_calls] == ["get_weather", "delete_files"]
    assert all(len(c.id) == 9 and c.id.isalnum() for c in listed.tool_calls)  # Mistral's templates require it
    bare = parse_tool_output('[{"name": "get_weather", "arguments": {"city": "Nice"}}]', TOOLS, "mistral")
    assert bare.tool_calls[0].arguments == {"city": "Nice"}  # [TOOL_CALLS] dropped as a special token
    v11 = parse_tool_output('[TOOL_CALLS]get_weather[ARGS]{"city": "Nice"}', TOOLS, "mistral")
    assert v11.tool_calls[0].arguments == {"city": "Nice"}
    assert parse_tool_output("[1, 2] are numbers", TOOLS, "mistral").content == "[1, 2] are numbers"


def test_formats_write_what_they_read():
    for name in ("hermes", "llama3_json", "mistral"):
        parser = get_tool_parser(name)
        text = parser.format_calls([("get_weather", {"city": "Bern"}), ("delete_files", {"path": "/a"})])
        out = parse_tool_output(text, TOOLS, parser)
        assert [c.name for c in out.tool_calls] == ["get_weather", "delete_files"], name


def test_call_schema_accepts_exactly_the_bound_calls():
    from jsonschema import Draft202012Validator

    hermes = Draft202012Validator(call_schema(ToolPrompt(TOOLS, "required"), get_tool_parser("hermes")))
    assert hermes.is_valid({"name": "get_weather", "arguments": {"city": "Bern"}})
    assert not hermes.is_valid({"name": "get_weather", "arguments": {}})
    assert not hermes.is_valid({"name": "format_disk", "arguments": {}})
    named = Draft202012Validator(call_schema(ToolPrompt(TOOLS, "get_weather"), get_tool_parser("llama3_json")))
    assert not named.is_valid({"name": "delete_files", "parameters": {"path": "/"}})
    assert named.is_valid({"name": "get_weather", "parameters": {"city": "Bern"}})
    assert isinstance(ToolCall("x", "f", {}).to_openai()["function"]["arguments"], str)
