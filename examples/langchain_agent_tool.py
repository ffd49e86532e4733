"""An agent tool whose body drafts its answer with an aligned STARS chain.

The tool is an ordinary LangChain tool, so any agent can use it, e.g. with the `langchain` package
and a tool-calling model:

    from langchain.agents import create_agent
    agent = create_agent(model="...", tools=[draft_customer_reply])

Here a tool-calling model runs the agent and STARS aligns one tool's text. `ChatStars` can also be the
agent's model itself (`ChatStars().bind_tools(...)`, examples/langchain_agent.py).

Here the tool is called exactly as an agent calls it: with a tool call, answered by a ToolMessage.
Runs on the embedded defaults (no network):

    python examples/langchain_agent_tool.py
    STARS_EXAMPLE_MAX_TOKENS=16 python examples/langchain_agent_tool.py   # a quick run
"""

from __future__ import annotations

import os

from langchain_core.messages import ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_stars import ChatStars

MAX_TOKENS = int(os.environ.get("STARS_EXAMPLE_MAX_TOKENS", "64"))

# The aligned chain the tool drafts with: STARS steers every 8-token segment towards a friendly reply.
drafter = ChatStars(reward="sentiment", horizon=8, num_candidates=2, max_tokens=MAX_TOKENS, seed=0)
draft_chain = (
    ChatPromptTemplate.from_messages(
        [
            ("system", "You write short, polite replies to customers. Never blame the customer."),
            ("human", "Customer message: {message}\nWrite the reply."),
        ]
    )
    | drafter
    | StrOutputParser()
)


@tool
def draft_customer_reply(message: str) -> str:
    """Draft a friendly reply to a customer's message. Use it whenever a reply to a customer is needed."""
    return draft_chain.invoke({"message": message})


def main() -> None:
    call = {
        "type": "tool_call",
        "id": "call_1",
        "name": "draft_customer_reply",
        "args": {"message": "My order arrived two weeks late and the box was damaged."},
    }
    answer = draft_customer_reply.invoke(call)  # what an agent's tool node does
    assert isinstance(answer, ToolMessage) and answer.tool_call_id == "call_1"
    print(f"{answer.name} -> {answer.content}")


if __name__ == "__main__":
    main()
