"""`ChatStars` as the model of `langchain.agents.create_agent`, end to end on the embedded policy
(SmolLM2-135M-Instruct): two tools, a two-step task (call a tool, then answer from its result).

The first step is forced (`tool_choice="required"`, by a middleware, as an agent author does with a
small model): the call is decoded under the bound tools' JSON Schemas, so it always parses. The
second step is the model's own choice (`tool_choice="auto"`)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_stars import ChatStars

from stars_plugins import StarsRuntime

WEATHER = {"paris": "rainy, 12 degrees", "rome": "sunny, 24 degrees"}


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return WEATHER.get(city.strip().lower(), "unknown city")


@tool
def get_population(city: str) -> str:
    """Get the number of people living in a city."""
    return {"paris": "2.1 million", "rome": "2.8 million"}.get(city.strip().lower(), "unknown city")


class CallAToolFirst(AgentMiddleware):
    """Until a tool has answered, the model must call one (a small model's first step, forced)."""

    def wrap_model_call(self, request: ModelRequest, handler: Any) -> Any:
        return handler(self._forced(request))

    async def awrap_model_call(self, request: ModelRequest, handler: Any) -> Any:
        return await handler(self._forced(request))

    @staticmethod
    def _forced(request: ModelRequest) -> ModelRequest:
        if any(isinstance(m, ToolMessage) for m in request.messages):
            return request
        return request.override(tool_choice="required")


@pytest.fixture
def agent_model(runtime: StarsRuntime) -> ChatStars:
    return ChatStars(max_tokens=48, horizon=8, max_rejections=0, seed=0)


def test_create_agent_calls_a_tool_then_answers_from_its_result(agent_model: ChatStars) -> None:
    agent = create_agent(agent_model, tools=[get_weather, get_population], middleware=[CallAToolFirst()])
    state = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]}, {"recursion_limit": 8})
    messages = state["messages"]
    kinds = [type(m).__name__ for m in messages]
    transcript = "\n".join(f"{type(m).__name__}: {m.content!r} {getattr(m, 'tool_calls', '')}" for m in messages)
    # step 1: a valid call of the right tool with the city from the request, run by the agent
    first = messages[1]
    assert isinstance(first, AIMessage) and first.tool_calls, transcript
    assert first.tool_calls[0]["name"] == "get_weather", transcript
    assert first.tool_calls[0]["args"]["city"].lower() == "paris", transcript
    assert isinstance(messages[2], ToolMessage) and messages[2].content == WEATHER["paris"], transcript
    # step 2: the agent finishes with a text answer (no further call)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.text.strip(), transcript
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"], transcript  # two steps
    assert final.response_metadata["finish_reason"] in ("eos", "length"), transcript


async def test_create_agent_streams_the_call_and_the_answer(agent_model: ChatStars) -> None:
    """The same agent, streamed (`astream`, stream_mode="messages"): the call arrives as one complete
    `tool_call_chunks` entry, then the tool's answer, then the model's text."""
    agent = create_agent(agent_model, tools=[get_weather, get_population], middleware=[CallAToolFirst()])
    chunks = []
    inputs = {"messages": [HumanMessage("What is the weather in Rome?")]}
    async for message, _meta in agent.astream(inputs, {"recursion_limit": 8}, stream_mode="messages"):
        chunks.append(message)
    calls = [c for c in chunks if getattr(c, "tool_call_chunks", None)]
    assert calls, chunks
    whole = calls[0].tool_call_chunks[0]
    assert whole["name"] in ("get_weather", "get_population") and whole["id"], whole
    assert any(isinstance(c, ToolMessage) for c in chunks), chunks
    assert any(type(c).__name__ == "AIMessageChunk" and c.text for c in chunks), chunks
