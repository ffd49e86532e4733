"""HTTP to a serving engine: JSON in and out, retries with backoff, timeouts, an API key.

A segment request has no side effects on the server, so a request that fails because the
connection was refused or reset, or because the server answered 429/502/503/504, is simply sent
again after a pause that doubles each time. A 4xx other than 429 is the caller's fault (context
overflow, unknown model): it fails at once with the server's own message. The API key travels only
in the `Authorization` header; it is never part of a message, a log line or a `repr`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from stars_plugins.errors import ServingError, ServingUnavailableError

#: Environment variable read when no `api_key` is passed.
API_KEY_ENV = "STARS_ENGINE_API_KEY"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_RETRY_EXCEPTIONS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)


class HttpTransport:
    """One connection pool shared by every request to one or more engine replicas (thread-safe)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_connections: int = 32,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.has_api_key = bool(key)
        self._sleep = sleep
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), limits=limits)
        self._client.headers.update(headers)

    def get_json(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> Any:
        return self._send("GET", url, None, timeout, retries)

    def post_json(
        self, url: str, body: dict[str, Any], *, timeout: float | None = None, retries: int | None = None
    ) -> Any:
        return self._send("POST", url, body, timeout, retries)

    def _send(
        self, method: str, url: str, body: dict[str, Any] | None, timeout: float | None, retries: int | None
    ) -> Any:
        attempts = 1 + (self.retries if retries is None else retries)
        last: str = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.request(method, url, json=body, timeout=timeout or self.timeout)
            except _RETRY_EXCEPTIONS as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            except httpx.TimeoutException as exc:
                raise ServingUnavailableError(
                    f"{method} {url} timed out after {timeout or self.timeout:g} s ({type(exc).__name__}); the "
                    "server may be overloaded or the segment too long: raise the timeout or lower the load",
                    url=url,
                ) from exc
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {server_message(response)}"
                continue
            if response.status_code >= 400:
                raise ServingError(
                    f"{method} {url} failed with HTTP {response.status_code}: {server_message(response)}",
                    url=url,
                    status=response.status_code,
                )
            try:
                return response.json()
            except ValueError as exc:
                raise ServingError(
                    f"{method} {url} answered with a body that is not JSON: {response.text[:200]!r}",
                    url=url,
                    status=response.status_code,
                ) from exc
        raise ServingUnavailableError(
            f"{method} {url} failed {attempts} time(s), last: {last}. Is the server running and reachable? "
            "(requests are retried with backoff; raise `retries` for a server that restarts slowly)",
            url=url,
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        key = "set" if self.has_api_key else "none"
        return f"HttpTransport(timeout={self.timeout}, retries={self.retries}, api_key={key})"


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its body: OpenAI-style `{"error": {"message"}}` (vLLM,
    llama.cpp), `{"message"}`, FastAPI's `{"detail"}` (SGLang), or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return str(body)[:500]
