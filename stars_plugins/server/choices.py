"""Run every choice of a request as its own call and merge their text deltas.

Each choice streams through the one request path (`Call.astream`: the same deltas the adapters
stream), so the choices of a request, and the requests of every client, share the policy's
lockstep batches. Closing the merged iterator (a client that went away) cancels every choice:
each leaves its batch at the next round boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from stars_plugins.calls import AsyncDeltaStream
from stars_plugins.results import GenerationResult
from stars_plugins.server.protocol import Plan
from stars_plugins.tools.outcomes import ToolCall


@dataclass
class ChoiceEvent:
    """New text of choice `index`, or its end: `result` (and `error` if it failed)."""

    index: int
    text: str = ""
    result: GenerationResult | None = None
    error: BaseException | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # valid calls complete (and accepted) in this event

    @property
    def final(self) -> bool:
        return self.result is not None or self.error is not None


async def run_choices(plan: Plan) -> AsyncIterator[ChoiceEvent]:
    """Text deltas of all choices in arrival order; every choice ends with one final event."""
    queue: asyncio.Queue[ChoiceEvent] = asyncio.Queue()
    streams = [choice.call.astream(choice.prompt) for choice in plan.choices]

    async def pump(index: int, stream: AsyncDeltaStream) -> None:
        try:
            async for delta in stream:
                calls = tuple(c for c in delta.tool_calls if isinstance(c, ToolCall))
                if delta.text or calls or delta.result is not None:
                    queue.put_nowait(ChoiceEvent(index, text=delta.text, result=delta.result, tool_calls=calls))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # this choice failed (its reward, its prompt): report it, others go on
            queue.put_nowait(ChoiceEvent(index, result=stream.result, error=exc))

    tasks = [asyncio.create_task(pump(c.index, s)) for c, s in zip(plan.choices, streams, strict=True)]
    pending = len(tasks)
    try:
        while pending:
            event = await queue.get()
            pending -= event.final
            yield event
    finally:
        for stream in streams:
            stream.cancel()  # flags only: safe even while this task is being cancelled
        for task in tasks:
            task.cancel()
