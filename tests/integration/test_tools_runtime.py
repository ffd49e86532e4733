"""Tool calls on the embedded policy (SmolLM2-135M, whose template drops tools: the fallback
prompt): required and named calls decoded under the tools' constraint, streamed calls, history
with tool results, tool_choice none, and bad tool messages."""

from __future__ import annotations

import pytest

from stars_plugins.calls import prepare_call
from stars_plugins.errors import PromptError
from stars_plugins.tools import ToolCall
from tests.helpers.tools import GET_WEATHER, string_tool

TOOLS = [GET_WEATHER, string_tool("send_email", "Send an email", "to", "body")]
SMALL = {"max_new_tokens": 40, "horizon": 8, "seed": 3, "strategy": "vanilla"}


def call_with(runtime, **overrides):
    return prepare_call(runtime, runtime.config.model_dump(), {**SMALL, **overrides}, owner="test")


def test_required_call_is_a_valid_call_of_a_bound_tool(runtime):
    (result,) = call_with(runtime, tools=TOOLS, tool_choice="required").generate(["What is the weather in Paris?"])
    assert result.response_prefix == "<tool_call>\n"
    assert result.finish_reason == "tool_calls", result.text
    (call,) = result.tool_calls
    assert call.name in {"get_weather", "send_email"} and not result.invalid_tool_calls
    assert set(call.arguments) >= ({"city"} if call.name == "get_weather" else {"to", "body"})


def test_named_call_under_stars_and_streamed(runtime):
    call = call_with(
        runtime, tools=TOOLS, tool_choice="get_weather", strategy="stars", num_candidates=2, max_rejections=2
    )
    deltas = list(call.stream("Is it raining in Lisbon right now?"))
    result = deltas[-1].result
    assert result.finish_reason == "tool_calls", result.text
    streamed = [c for d in deltas for c in d.tool_calls]
    assert [c.id for c in streamed] == [c.id for c in result.tool_calls]
    assert isinstance(streamed[0], ToolCall) and streamed[0].name == "get_weather"
    assert isinstance(streamed[0].arguments["city"], str)
    assert "".join(d.text for d in deltas) == result.content == ""  # a call only: no text shown


def test_history_with_tool_results_and_choice_none(runtime):
    history = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny and 24 degrees."},
    ]
    text = runtime.policy.decode(runtime.render(history, runtime.config.updated(tools=TOOLS)))
    assert "<tool_response>\nSunny and 24 degrees.\n</tool_response>" in text and '"name": "get_weather"' in text
    (answer,) = call_with(runtime, tools=TOOLS, tool_choice="none").generate([history])
    assert answer.content is None and not answer.tool_calls  # none: plain text, nothing parsed
    assert answer.finish_reason in ("eos", "length") and answer.text


def test_tool_messages_are_checked(runtime):
    with pytest.raises(PromptError, match="tool_call_id"):
        call_with(runtime, tools=TOOLS).generate(
            [[{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]]
        )
    bad_call = [{"role": "assistant", "content": None, "tool_calls": [{"id": "1", "function": {"arguments": "{}"}}]}]
    with pytest.raises(PromptError, match="tool call 0"):
        call_with(runtime, tools=TOOLS).generate([bad_call])
