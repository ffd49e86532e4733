"""LCEL chains on STARS: a prompt template, an aligned LLM and an output parser.

Runs on the embedded defaults (no network):

    python examples/langchain_chain.py
    STARS_EXAMPLE_MAX_TOKENS=16 python examples/langchain_chain.py   # a quick run
"""

from __future__ import annotations

import os

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_stars import ChatStars, StarsLLM

MAX_TOKENS = int(os.environ.get("STARS_EXAMPLE_MAX_TOKENS", "64"))


def main() -> None:
    # One chain, its own settings: the sentiment reward, segments of 8 tokens, 2 candidates per segment.
    friendly = StarsLLM(reward="sentiment", horizon=8, num_candidates=2, max_tokens=MAX_TOKENS, seed=0)
    prompt = PromptTemplate.from_template("Write a short note to a neighbour about {topic}.")
    chain = prompt | friendly | StrOutputParser()
    print("LCEL chain:", chain.invoke({"topic": "a noisy party last night"}), sep="\n", end="\n\n")

    # Another chain with other settings shares the loaded policy: nothing is loaded twice.
    plain = StarsLLM(strategy="vanilla", max_tokens=MAX_TOKENS, seed=0)
    assert plain.runtime.policy is friendly.runtime.policy
    print(
        "Same prompt, plain sampling:",
        (prompt | plain | StrOutputParser()).invoke({"topic": "a noisy party"}),
        sep="\n",
        end="\n\n",
    )

    # The STARS facts of a generation: reward, finish reason, rounds, rejections, discarded tokens.
    result = friendly.generate(["Say something kind about Mondays."])
    info = result.generations[0][0].generation_info or {}
    print("generation_info:", {k: info[k] for k in ("finish_reason", "reward")}, info["stats"])
    print("token usage:", (result.llm_output or {})["token_usage"], end="\n\n")

    # A chat chain: the messages go through the policy's chat template.
    chat = ChatStars(reward="sentiment", horizon=8, max_tokens=MAX_TOKENS, seed=0)
    chat_prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a cheerful assistant. Answer in two sentences."), ("human", "{question}")]
    )
    reply = (chat_prompt | chat).invoke({"question": "How should I spend a rainy Sunday?"})
    print("ChatStars:", reply.content, sep="\n")
    print("usage:", reply.usage_metadata, "reward:", reply.response_metadata["reward"])


if __name__ == "__main__":
    main()
