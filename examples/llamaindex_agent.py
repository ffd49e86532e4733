"""A LlamaIndex `FunctionAgent` whose LLM is `StarsLLM`, with two tools, on the embedded models only
(SmolLM2-135M-Instruct steered by the default reward; no hub, no network).

`initial_tool_choice="required"` forces the agent's first step to call a tool: the call is decoded
under the tools' JSON Schemas, so a 135M model still writes a valid call, and STARS scores it like any
other segment. The second step, the answer from the tool's result, is the model's own choice.

    python examples/llamaindex_agent.py
    python examples/llamaindex_agent.py "What is the weather in Rome?"
    STARS_EXAMPLE_MAX_TOKENS=32 python examples/llamaindex_agent.py    # a quick run

Needs `pip install llama-index-llms-stars` (from a clone: `make install`).
"""

from __future__ import annotations

import argparse
import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything used here is on disk already

from llama_index.core.agent.workflow import AgentStream, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool
from llama_index.llms.stars import StarsLLM

MAX_TOKENS = int(os.environ.get("STARS_EXAMPLE_MAX_TOKENS", "48"))
WEATHER = {"paris": "rainy, 12 degrees", "rome": "sunny, 24 degrees"}
POPULATION = {"paris": "2.1 million", "rome": "2.8 million"}


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return WEATHER.get(city.strip().lower(), "unknown city")


def get_population(city: str) -> str:
    """Get the number of people living in a city."""
    return POPULATION.get(city.strip().lower(), "unknown city")


async def run(question: str) -> None:
    llm = StarsLLM(max_tokens=MAX_TOKENS, horizon=8, seed=0)
    tools = [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_population)]
    agent = FunctionAgent(tools=tools, llm=llm, initial_tool_choice="required")
    handler = agent.run(user_msg=question, max_iterations=4)
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            print(f"\n[call] {event.tool_name}({event.tool_kwargs}) -> {event.tool_output.content}", flush=True)
        elif isinstance(event, AgentStream) and event.delta:
            print(event.delta, end="", flush=True)
    response = await handler
    print(f"\n\nAnswer: {response.response.content}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="What is the weather in Paris?")
    asyncio.run(run(parser.parse_args().question))


if __name__ == "__main__":
    main()
