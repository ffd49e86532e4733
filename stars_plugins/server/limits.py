"""Guards in front of generation: bearer API key, request body size, and an admission gate."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from stars_plugins.server.errors import APIError, error_body


def check_api_key(authorization: str | None, api_key: str | None) -> None:
    """Raise a 401 `APIError` unless `authorization` is `Bearer <api_key>` (no key: open server)."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # Constant-time comparison: the time taken must not reveal how much of the key matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            type="authentication_error",
            code="invalid_api_key",
        )


class AdmissionGate:
    """At most `max_active` requests generate at once, `max_queued` more wait for a slot; a request
    beyond both is refused at once with 429 and a Retry-After header."""

    def __init__(
        self,
        max_active: int,
        max_queued: int,
        retry_after: int = 1,
        on_change: Callable[[int], object] | None = None,
    ):
        if max_active < 1 or max_queued < 0:
            raise ValueError("max_active must be >= 1 and max_queued >= 0")
        self.max_active = max_active
        self.max_queued = max_queued
        self.retry_after = retry_after
        self.on_change = on_change  # called with active + queued after every admission and release
        self._slots = asyncio.Semaphore(max_active)
        self.active = 0
        self.queued = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        if self.active >= self.max_active and self.queued >= self.max_queued:
            raise APIError(
                429,
                f"server busy: {self.active} requests running and {self.queued} waiting; retry later",
                type="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        self.active += 1
        self._changed()

    def release(self) -> None:
        self.active -= 1
        self._slots.release()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.active + self.queued)


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 without being read whole."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        # Read the body here, bounded, then replay it: the app never sees more than max_bytes.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps(
            error_body(f"request body larger than {self.max_bytes} bytes", code="request_too_large")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
