"""Accepted STARS segments -> text deltas for sync and async LangChain streams.

`Segment.text` is already a safe delta (the runtime holds back a tail that could begin a stop
string), so the deltas add up exactly to `GenerationResult.text`. Every stream ends with one last
delta that carries the `GenerationResult` (for `generation_info` and usage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from stars_plugins import GenerationResult, StarsConfig, StarsRuntime


def stream_deltas(
    runtime: StarsRuntime, prompt: Any, config: StarsConfig, reward: Any = None
) -> Iterator[tuple[str, GenerationResult | None]]:
    """`(delta, None)` per accepted segment with new text, then `(last_delta, result)` once.

    Closing the iterator early (a consumer that stops reading) stops generation and frees the batch.
    """
    stream = runtime.stream(prompt, config, reward=reward)
    try:
        last = ""
        for segment in stream:
            if segment.final:
                last = segment.text
                for _ in stream:  # processes the finish event: sets `stream.result`, costs no tokens
                    pass
                break
            if segment.text:
                yield segment.text, None
        yield last, _result(stream.result)
    finally:
        stream.close()


async def astream_deltas(
    runtime: StarsRuntime, prompt: Any, config: StarsConfig, reward: Any = None
) -> AsyncIterator[tuple[str, GenerationResult | None]]:
    """`stream_deltas` for asyncio: the runtime decodes in a worker thread, the event loop stays free.

    Closing this generator early cancels the request at its next round boundary.
    """
    stream = runtime.astream(prompt, config, reward=reward)
    try:
        last = ""
        async for segment in stream:
            if segment.final:
                last = segment.text
                async for _ in stream:  # the finish event: sets `stream.result`
                    pass
                break
            if segment.text:
                yield segment.text, None
        yield last, _result(stream.result)
    finally:
        stream.cancel()  # a no-op once finished; stops an abandoned request


def _result(result: GenerationResult | None) -> GenerationResult:
    if result is None:  # the runtime always reports a finished request; guard against a silent loss
        raise RuntimeError("the STARS stream ended without a result")
    return result
