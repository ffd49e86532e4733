"""Accepted STARS segments -> text deltas that are safe to show, for sync and async streams.

Every stream ends with one last delta that carries the `GenerationResult` (for `generation_info`
and usage), so the streamed text always adds up to `result.text`, which the runtime has already
cut at the first stop string.

Workaround (remove once the core streams stop-safe deltas): `Segment.text` is not always a delta of
the final text. When a stop string spans two segments, the runtime cuts text it already yielded, and
the final segment's `text` is then the whole (cut) response instead of a delta; after a decode that
changes earlier characters (a multi-byte character split over segments) the same happens. So the
delta is computed here from the accepted token ids, the tail that could still start a stop string is
held back, and the final delta comes from `result.text`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from stars_plugins import GenerationResult, Segment, StarsConfig, StarsRuntime


class DeltaTracker:
    """Turns accepted segments of one request into text deltas that never need taking back."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str]):
        self._decode = decode
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self.emitted = ""

    def push(self, segment: Segment) -> str:
        """The new text that is safe to show after `segment` (may be empty)."""
        self._ids.extend(segment.token_ids)
        return self._advance(self._safe(self._decode(self._ids)))

    def finish(self, text: str) -> str:
        """The rest of the final text (`GenerationResult.text`)."""
        return self._advance(text)

    def _safe(self, text: str) -> str:
        # An incomplete multi-byte character decodes to U+FFFD: wait for its other bytes.
        end = len(text.rstrip("\ufffd"))
        # A tail that may be the start of a stop string waits for the next segment.
        for start in range(max(0, end - max((len(s) for s in self._stop), default=0) + 1), end):
            tail = text[start:end]
            if any(s.startswith(tail) for s in self._stop):
                return text[:start]
        return text[:end]

    def _advance(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""  # earlier text changed after all; what was shown stays, the result holds the truth
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta


def stream_deltas(
    runtime: StarsRuntime, prompt: Any, config: StarsConfig, reward: Any = None
) -> Iterator[tuple[str, GenerationResult | None]]:
    """`(delta, None)` per accepted segment with new text, then `(last_delta, result)` once.

    Closing the iterator early (a consumer that stops reading) stops generation and frees the batch.
    """
    stream = runtime.stream(prompt, config, reward=reward)
    tracker = DeltaTracker(runtime.policy.decode, config.stop)
    try:
        for segment in stream:
            if segment.final:
                for _ in stream:  # processes the finish event: sets `stream.result`, costs no tokens
                    pass
                break
            delta = tracker.push(segment)
            if delta:
                yield delta, None
        result = _result(stream.result)
        yield tracker.finish(result.text), result
    finally:
        stream.close()


async def astream_deltas(
    runtime: StarsRuntime, prompt: Any, config: StarsConfig, reward: Any = None
) -> AsyncIterator[tuple[str, GenerationResult | None]]:
    """`stream_deltas` for asyncio: the runtime decodes in a worker thread, the event loop stays free.

    Closing this generator early cancels the request at its next round boundary.
    """
    stream = runtime.astream(prompt, config, reward=reward)
    tracker = DeltaTracker(runtime.policy.decode, config.stop)
    try:
        async for segment in stream:
            if segment.final:
                async for _ in stream:  # the finish event: sets `stream.result`
                    pass
                break
            delta = tracker.push(segment)
            if delta:
                yield delta, None
        result = _result(stream.result)
        yield tracker.finish(result.text), result
    finally:
        stream.cancel()  # a no-op once finished; stops an abandoned request


def _result(result: GenerationResult | None) -> GenerationResult:
    if result is None:  # the runtime always reports a finished request; guard against a silent loss
        raise RuntimeError("the STARS stream ended without a result")
    return result
