"""langchain-openai's `ChatOpenAI.bind_tools` against a live `stars serve` (the embedded models, over
HTTP on 127.0.0.1): OpenAI's `tools` / `tool_choice`, `tool_calls` in the message and in streamed
deltas, `finish_reason: "tool_calls"`, and a `tool` turn in the history, as any OpenAI-tools client
sends them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from stars_plugins.benchmarks.serve_load import free_port, wait_healthy

KEY = "test-key-langchain-tools"


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return "rainy, 12 degrees"


@tool
def get_population(city: str) -> str:
    """Get the number of people living in a city."""
    return "2.1 million"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "STARS_TEST_KEY": KEY, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path = Path(tmp_path_factory.mktemp("serve")) / "serve.log"
    command = [sys.executable, "-m", "stars_plugins.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--api-key-env", "STARS_TEST_KEY", "--no-access-log", "--max-new-tokens", "48", "--horizon", "8"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout=600)
    except Exception:
        process.kill()
        raise AssertionError(log_path.read_text()) from None
    yield url
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.fixture
def chat(server: str) -> ChatOpenAI:
    # STARS as served by default, with at most 2 rejections per segment (the default, 20, lets the
    # harmless reward resample a tool call's JSON for half a minute on 2 cores; the settings are not
    # what this module tests)
    return ChatOpenAI(
        base_url=f"{server}/v1",
        api_key=KEY,
        model="stars",
        max_tokens=48,
        seed=0,
        max_retries=0,
        extra_body={"stars": {"max_rejections": 2}},
    )


@pytest.mark.parametrize("tool_choice", ["any", "get_weather"])
def test_bind_tools_forced_call_streamed_and_not(chat: ChatOpenAI, tool_choice: str) -> None:
    bound = chat.bind_tools([get_weather, get_population], tool_choice=tool_choice)
    message = bound.invoke("What is the weather in Paris?")
    assert message.response_metadata["finish_reason"] == "tool_calls", message
    assert len(message.tool_calls) == 1 and message.tool_calls[0]["id"], message
    call = message.tool_calls[0]
    assert call["name"] in ("get_weather", "get_population") and isinstance(call["args"].get("city"), str), call
    if tool_choice == "get_weather":
        assert call["name"] == "get_weather"
    full = None
    for chunk in bound.stream("What is the weather in Paris?"):
        full = chunk if full is None else full + chunk
    assert full is not None and full.tool_calls == message.tool_calls, (full, message)  # same seed, same call
    assert full.response_metadata["finish_reason"] == "tool_calls"


def test_a_tool_result_in_the_history_gets_an_answer(chat: ChatOpenAI) -> None:
    """The agent loop's second step: the assistant's call and the tool's answer go back as history."""
    bound = chat.bind_tools([get_weather, get_population], tool_choice="get_weather")
    question = HumanMessage("What is the weather in Paris?")
    call_message = bound.invoke([question])
    result = get_weather.invoke(call_message.tool_calls[0])
    assert isinstance(result, ToolMessage) and result.tool_call_id == call_message.tool_calls[0]["id"]
    answer = chat.bind_tools([get_weather, get_population], tool_choice="none").invoke([question, call_message, result])
    assert isinstance(answer, AIMessage) and answer.text.strip() and not answer.tool_calls, answer
    assert answer.response_metadata["finish_reason"] in ("stop", "length"), answer
