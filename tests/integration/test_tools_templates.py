"""Prompts with tools on the real chat templates of Qwen2.5, Hermes 2 Pro, Llama 3.1/3.2 and
Mistral (tests/data/chat_templates, swapped into the embedded tokenizer: no hub), and the
embedded SmolLM2 template that drops tools (the fallback prompt). Scripted outputs in each
template's format are streamed token by token through the delta machinery and parsed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from stars_plugins.calls import _Deltas
from stars_plugins.config import StarsConfig
from stars_plugins.decoding.state import attach_tool_calls
from stars_plugins.prompts import PreparedPrompt, PromptOptions, PromptRenderer, normalize_messages
from stars_plugins.results import GenerationResult, Segment
from stars_plugins.tools import InvalidToolCall, ToolCall, get_tool_parser, render_with_tools

TEMPLATES = Path(__file__).parents[1] / "data" / "chat_templates"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
DELETE = {
    "type": "function",
    "function": {
        "name": "delete_files",
        "description": "Delete every file in a folder",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Folder"}},
            "required": ["path"],
        },
    },
}
HISTORY = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "abcDEF123",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "Sunny, 24 C"},
    {"role": "user", "content": "And in Oslo?"},
]
# template file -> (format it teaches, whether it renders tools and tool history itself)
CASES = {
    "qwen2.5_instruct.jinja": ("hermes", True),
    "hermes_2_pro.jinja": ("hermes", True),
    "llama3.1_json.jinja": ("llama3_json", True),
    "llama3.2_json.jinja": ("llama3_json", True),
    "mistral.jinja": ("mistral", False),  # it writes an assistant's content, not its tool_calls: fallback
    None: ("hermes", False),  # the embedded SmolLM2 template drops tools: fallback
}


@pytest.fixture(scope="module")
def base_tokenizer():
    from transformers import AutoTokenizer

    from stars_plugins.models import embedded_policy_file

    path = embedded_policy_file()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def tokenizer_with(base, template_file):
    tokenizer = copy.deepcopy(base)
    if template_file is not None:
        tokenizer.chat_template = (TEMPLATES / template_file).read_text()
    return tokenizer


@pytest.mark.parametrize("template_file", list(CASES))
def test_multi_turn_tool_history_renders(base_tokenizer, template_file):
    tokenizer = tokenizer_with(base_tokenizer, template_file)
    expected_format, native = CASES[template_file]
    config = StarsConfig(tools=[WEATHER, DELETE])
    rendered = render_with_tools(tokenizer, normalize_messages(HISTORY, 0), PromptOptions.of(config).tools)
    assert rendered.parser.name == expected_format
    assert rendered.native is native
    text = rendered.text
    for needed in ("get_weather", "delete_files", "Paris", "Sunny, 24 C", "And in Oslo?"):
        assert needed in text, (needed, text)
    if not native:
        assert "<tools>\n" in text and "get_weather" in text.split("<tools>\n")[1]  # the fallback prompt lists them
        assert rendered.parser.format_call("get_weather", {"city": "Paris"}) in text  # history as text
    # the same history, tokenized by the one renderer, fits and ends with the generation prompt
    renderer = PromptRenderer(tokenizer, "test", 8192)
    (prepared,) = renderer.prepare([HISTORY], PromptOptions.of(config))
    assert prepared.tool_parser == expected_format and prepared.response_prefix == ""


@pytest.mark.parametrize("template_file", list(CASES))
def test_required_call_writes_the_format_opening(base_tokenizer, template_file):
    tokenizer = tokenizer_with(base_tokenizer, template_file)
    parser = get_tool_parser(CASES[template_file][0])
    named = StarsConfig(tools=[WEATHER, DELETE], tool_choice="get_weather")
    prepared = PromptRenderer(tokenizer, "t", 8192).prepare(["Weather in Oslo?"], PromptOptions.of(named))[0]
    assert prepared.response_prefix == parser.forced_prefix("get_weather")
    assert tokenizer.decode(prepared.token_ids).endswith(prepared.response_prefix)


def _scripted_stream(tokenizer, text, horizon=4):
    """`text` as the policy would emit it: token ids decoded K at a time into segment texts."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    segments, shown = [], ""
    for start in range(0, len(ids), horizon):
        so_far = tokenizer.decode(ids[: start + horizon])
        final = start + horizon >= len(ids)
        segments.append(
            Segment(
                len(segments),
                so_far[len(shown) :],
                tuple(ids[start : start + horizon]),
                0.0,
                0.0,
                0,
                False,
                final,
                "eos" if final else None,
            )
        )
        shown = so_far
    return segments, shown


@pytest.mark.parametrize("template_file", list(CASES))
def test_scripted_stream_delivers_each_call_once_complete(base_tokenizer, template_file):
    tokenizer = tokenizer_with(base_tokenizer, template_file)
    parser = get_tool_parser(CASES[template_file][0])
    calls = [("get_weather", {"city": "Oslo"}), ("delete_files", {"path": "/tmp/cache"})]
    lead = "" if parser.name != "hermes" else "Checking now. "  # Llama and Mistral answer with calls only
    bad = (
        ""
        if parser.name != "hermes"
        else '\n<tool_call>\n{"name": "get_weather", "arguments": {"town": "Oslo"}}\n</tool_call>'
    )
    text = lead + parser.format_calls(calls) + bad
    segments, full = _scripted_stream(tokenizer, text)
    config = StarsConfig(tools=[WEATHER, DELETE])
    prepared = PreparedPrompt(0, "x", (1,), "x", tool_parser=parser.name)
    request = SimpleNamespace(prepared=prepared, config=config, seed=7)
    deltas = _Deltas(request)
    streamed, delivered_at = [], []
    for segment in segments:
        delta = deltas.add(segment)
        if delta is not None:
            assert "{" not in delta.text and "tool_call" not in delta.text  # call text never shows as content
            streamed.append(delta.text)
            delivered_at.extend(
                (len(tokenizer.decode(tokenizer(deltas.text)["input_ids"])), c) for c in delta.tool_calls
            )
    result = GenerationResult("x", full, [], 0.0, "eos", "stars")
    attach_tool_calls(result, config, prepared, request.seed)
    last = deltas.finish(result)
    streamed.append(last.text)
    every = [c for _, c in delivered_at] + list(last.tool_calls)
    assert "".join(streamed) == result.content == lead.strip()
    assert [(c.name, c.arguments) for c in result.tool_calls] == calls
    assert result.finish_reason == "tool_calls"
    assert [c.id for c in every if isinstance(c, ToolCall)] == [c.id for c in result.tool_calls]  # same ids
    if bad:
        assert isinstance(every[-1], InvalidToolCall) and "'city' is a required property" in every[-1].error
    if parser.name == "hermes":
        assert delivered_at, "a complete <tool_call> is delivered before the answer ends"
    json.dumps([c.to_openai() for c in result.tool_calls])
