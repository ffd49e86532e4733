"""A LangChain agent whose model is `ChatStars`: `langchain.agents.create_agent` with two tools, on the
embedded models only (SmolLM2-135M-Instruct steered by the default reward; no hub, no network).

The agent's first step is forced to call a tool (`tool_choice="required"`, set by a middleware until a
tool has answered): the call is decoded under the bound tools' JSON Schemas, so a 135M model still
writes a valid call, and STARS scores it like any other segment. The second step, the answer from the
tool's result, is the model's own choice (`tool_choice="auto"`).

    python examples/langchain_agent.py
    python examples/langchain_agent.py "What is the weather in Rome?" --stream
    STARS_EXAMPLE_MAX_TOKENS=32 python examples/langchain_agent.py    # a quick run

Needs `pip install langchain-stars langchain` (from a clone: `make install`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything used here is on disk already

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, wrap_model_call
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_stars import ChatStars

MAX_TOKENS = int(os.environ.get("STARS_EXAMPLE_MAX_TOKENS", "48"))
WEATHER = {"paris": "rainy, 12 degrees", "rome": "sunny, 24 degrees"}
POPULATION = {"paris": "2.1 million", "rome": "2.8 million"}


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return WEATHER.get(city.strip().lower(), "unknown city")


@tool
def get_population(city: str) -> str:
    """Get the number of people living in a city."""
    return POPULATION.get(city.strip().lower(), "unknown city")


@wrap_model_call
def call_a_tool_first(request: ModelRequest, handler: Any) -> Any:
    """Until a tool has answered, the model must call one."""
    if not any(isinstance(m, ToolMessage) for m in request.messages):
        request = request.override(tool_choice="required")
    return handler(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="What is the weather in Paris?")
    parser.add_argument("--stream", action="store_true", help="print the agent's messages as they come")
    args = parser.parse_args()

    model = ChatStars(max_tokens=MAX_TOKENS, horizon=8, seed=0)
    agent = create_agent(model, tools=[get_weather, get_population], middleware=[call_a_tool_first])
    inputs = {"messages": [HumanMessage(args.question)]}
    if args.stream:
        for message, _meta in agent.stream(inputs, {"recursion_limit": 8}, stream_mode="messages"):
            for call in getattr(message, "tool_call_chunks", None) or []:
                print(f"[call] {call['name']}({call['args']})", flush=True)
            if isinstance(message, ToolMessage):
                print(f"[{message.name}] {message.content}", flush=True)
            elif message.text:
                print(message.text, end="", flush=True)
        print()
        return
    for message in agent.invoke(inputs, {"recursion_limit": 8})["messages"]:
        calls = [f"{c['name']}({c['args']})" for c in getattr(message, "tool_calls", [])]
        print(f"{type(message).__name__}: {message.text!r}" + (f" calls {calls}" if calls else ""))


if __name__ == "__main__":
    main()
