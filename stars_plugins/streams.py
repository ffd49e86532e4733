"""Streams that stop generating when their consumer leaves.

`for x in stream: break` does not close an iterator the caller still holds, so a stream whose
`__iter__` returned itself would keep generating to the end. These bases make `__iter__` /
`__aiter__` return a fresh generator whose `finally` closes the stream: CPython closes that
generator as soon as the loop drops it (a `break`, a `return`, an exception in the loop body), and
asyncio closes a dropped async generator on its next turn. `next()` / `__anext__` work as usual,
and `close()` / `aclose()` stop the stream explicitly.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_NEVER = object()


class ClosingStream(Iterator[T]):
    """Subclasses implement `__next__` and `close()`; `close()` must be safe to call twice."""

    def __iter__(self) -> Iterator[T]:
        return self._loop()

    def _loop(self) -> Iterator[T]:
        try:
            yield from iter(self.__next__, _NEVER)  # ends when __next__ raises StopIteration
        finally:
            self.close()

    def close(self) -> None:
        raise NotImplementedError


class AsyncClosingStream(AsyncIterator[T]):
    """Subclasses implement `__anext__` and `aclose()`; `aclose()` must be safe to call twice."""

    def __aiter__(self) -> AsyncIterator[T]:
        return self._aloop()

    async def _aloop(self) -> AsyncIterator[T]:
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError


class ClosingIterator(ClosingStream[T]):
    """Wraps a generator (a framework's stream) so that leaving a loop over it closes it."""

    def __init__(self, source: Iterator[T]):
        self._source = source

    def __next__(self) -> T:
        return next(self._source)

    def close(self) -> None:
        close: Any = getattr(self._source, "close", None)
        if close is not None:
            close()


class AsyncClosingIterator(AsyncClosingStream[T]):
    """Wraps an async generator so that leaving an `async for` over it closes it."""

    def __init__(self, source: AsyncIterator[T]):
        self._source = source

    async def __anext__(self) -> T:
        return await anext(self._source)

    async def aclose(self) -> None:
        aclose: Any = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()


def closing_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a method that returns a (framework's) generator or async generator, or a coroutine
    method that returns one: it returns a `ClosingIterator` / `AsyncClosingIterator` around it."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stream = method(*args, **kwargs)
        if inspect.isawaitable(stream):
            return _aclosing(stream)
        return AsyncClosingIterator(stream) if hasattr(stream, "__anext__") else ClosingIterator(stream)

    return wrapper


async def _aclosing(awaitable: Any) -> AsyncClosingIterator[Any]:
    return AsyncClosingIterator(await awaitable)
