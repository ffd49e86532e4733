"""Tools through `stars serve` with the real `openai` client over HTTP: tools, tool_choice,
parallel_tool_calls, the tool role and assistant tool_calls in messages, tool_calls in the
message and in streamed deltas, finish_reason "tool_calls"."""

from __future__ import annotations

import json
import signal

import pytest

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")

from tests.helpers.tools import GET_WEATHER, string_tool  # noqa: E402
from tests.integration.test_server_live import KEY, start_serve  # noqa: E402

TOOLS = [GET_WEATHER, string_tool("delete_files", "Delete every file in a folder", "path")]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PLAIN = {"stars": {"strategy": "vanilla", "horizon": 8}}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    process, url = start_serve(tmp_path_factory.mktemp("serve-tools"), "--max-new-tokens", "40")
    yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_required_tool_call_in_the_message(client):
    response = client.chat.completions.create(
        model="stars", messages=ASK, tools=TOOLS, tool_choice="required", seed=2, extra_body=PLAIN
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "delete_files")
    assert isinstance(json.loads(call.function.arguments), dict)
    assert choice.message.content is None


def test_streamed_named_call_matches_the_whole_response(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    kwargs = {"model": "stars", "messages": ASK, "tools": TOOLS, "tool_choice": named, "seed": 5, "extra_body": PLAIN}
    whole = client.chat.completions.create(**kwargs).choices[0]
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"] == [whole.finish_reason]
    assert [(c.index, c.id, c.function.name, c.function.arguments) for c in calls] == [
        (0, t.id, t.function.name, t.function.arguments) for t in whole.message.tool_calls
    ]
    assert calls[0].function.name == "get_weather"


def test_history_with_tool_results_and_errors(client):
    history = [
        *ASK,
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
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
    ]
    answer = client.chat.completions.create(
        model="stars", messages=history, tools=TOOLS, tool_choice="none", parallel_tool_calls=False, extra_body=PLAIN
    )
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    with pytest.raises(openai.BadRequestError, match="not among the bound tools"):
        client.chat.completions.create(
            model="stars", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        client.chat.completions.create(model="stars", messages=[*ASK, {"role": "tool", "content": "x"}], tools=TOOLS)
