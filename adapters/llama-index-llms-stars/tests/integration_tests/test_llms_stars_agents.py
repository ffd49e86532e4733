"""`StarsLLM` as the LLM of LlamaIndex's `FunctionAgent`, end to end on the embedded policy
(SmolLM2-135M-Instruct): two tools, a two-step task (call a tool, then answer from its result).

`initial_tool_choice="required"` forces the first step (the call is decoded under the tools' JSON
Schemas, so it parses); the second step is the model's own choice. The agent streams (its default):
`astream_chat_with_tools` delivers each call once it is complete and accepted."""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCall, ToolCallResult
from llama_index.core.tools import FunctionTool
from llama_index.llms.stars import StarsLLM

from stars_plugins import StarsRuntime

WEATHER = {"paris": "rainy, 12 degrees", "rome": "sunny, 24 degrees"}


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return WEATHER.get(city.strip().lower(), "unknown city")


def get_population(city: str) -> str:
    """Get the number of people living in a city."""
    return {"paris": "2.1 million", "rome": "2.8 million"}.get(city.strip().lower(), "unknown city")


TOOLS = [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_population)]


@pytest.fixture
def llm(runtime: StarsRuntime) -> StarsLLM:
    return StarsLLM(runtime=runtime, max_tokens=48, horizon=8, max_rejections=0, seed=0)


@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_calls_a_tool_then_answers_from_its_result(llm: StarsLLM, streaming: bool) -> None:
    agent = FunctionAgent(tools=TOOLS, llm=llm, initial_tool_choice="required", streaming=streaming)
    handler = agent.run(user_msg="What is the weather in Paris?", max_iterations=4)
    calls, results, outputs = [], [], []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            results.append(event)
        elif isinstance(event, ToolCall):
            calls.append(event)
        elif isinstance(event, AgentOutput):
            outputs.append(event)
    final = await handler
    story = [(o.response.content, [(c.tool_name, c.tool_kwargs) for c in o.tool_calls]) for o in outputs]
    # step 1: one valid call of the right tool with the city from the request, run by the agent; the
    # call is not text (the message content outside the call is empty)
    assert len(results) == 1 and len(calls) == 1, story
    assert results[0].tool_name == "get_weather" and results[0].tool_kwargs["city"].lower() == "paris", story
    assert results[0].tool_output.content == WEATHER["paris"], story
    assert outputs[0].tool_calls and not (outputs[0].response.content or "").strip(), story
    # step 2: the agent finishes with a text answer (no further call)
    assert final.response.content and final.response.content.strip(), story
    assert "<tool_call>" not in final.response.content and '"arguments"' not in final.response.content, story
