"""Batching, streaming and async with `StarsLLM`.

- `batch`: all prompts run as ONE lockstep STARS batch (one runtime call).
- `stream`: one chunk per accepted segment, stop strings honored.
- `astream` / `abatch`: decoding runs in a worker thread; the event loop keeps serving other tasks.

Runs on the embedded defaults (no network):

    python examples/langchain_batch_stream.py
    STARS_EXAMPLE_MAX_TOKENS=16 python examples/langchain_batch_stream.py   # a quick run
"""

from __future__ import annotations

import asyncio
import os
import time

from langchain_stars import StarsLLM

MAX_TOKENS = int(os.environ.get("STARS_EXAMPLE_MAX_TOKENS", "48"))

llm = StarsLLM(reward="sentiment", horizon=8, max_tokens=MAX_TOKENS, seed=0)


def batch() -> None:
    prompts = ["Describe a good breakfast.", "Describe a quiet library.", "Describe a walk in the park."]
    start = time.perf_counter()
    texts = llm.batch(prompts)
    print(f"batch of {len(prompts)} in one lockstep run: {time.perf_counter() - start:.1f} s")
    for prompt, text in zip(prompts, texts, strict=True):
        print(f"  {prompt} -> {text!r}")


def stream() -> None:
    print("stream (one chunk per accepted segment, stopping at the first '.'):")
    for chunk in llm.stream("Tell me about the ocean.", stop=["."]):
        print(f"  [{chunk}]", flush=True)


async def astream_while_serving() -> None:
    heartbeats = 0

    async def heartbeat() -> None:  # another task the event loop keeps running meanwhile
        nonlocal heartbeats
        while True:
            await asyncio.sleep(0.01)
            heartbeats += 1

    task = asyncio.create_task(heartbeat())
    print("astream:")
    async for chunk in llm.astream("Tell me about the mountains.", horizon=4):
        print(f"  [{chunk}] (heartbeats so far: {heartbeats})", flush=True)
    texts = await llm.abatch(["Name a kind of tree.", "Name a kind of bird."])
    task.cancel()
    print(f"abatch: {texts}; the event loop ran {heartbeats} heartbeats meanwhile")


def main() -> None:
    batch()
    stream()
    asyncio.run(astream_while_serving())


if __name__ == "__main__":
    main()
