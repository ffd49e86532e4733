"""The FastAPI application: OpenAI routes over a `StarsRuntime`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stars_plugins.memory import Trimmer, resident_mib
from stars_plugins.server.choices import ChoiceEvent, run_choices
from stars_plugins.server.errors import APIError, error_body
from stars_plugins.server.limits import AdmissionGate, BodySizeLimit, check_api_key
from stars_plugins.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    Plan,
    ServerLimits,
    plan_request,
)
from stars_plugins.server.responses import ResponseShape, api_error_for, sse

logger = logging.getLogger("stars_plugins.server")


class ServerState:
    """What the routes share: the runtime, limits, the admission gate and counters for /health."""

    def __init__(
        self,
        runtime: Any,
        *,
        model_name: str,
        api_key: str | None,
        limits: ServerLimits,
        log_prompts: bool,
        trim_memory: bool | None = None,
    ):
        self.runtime = runtime
        self.model_name = model_name
        self.api_key = api_key
        self.limits = limits
        self.log_prompts = log_prompts
        # The server's own per-request objects are freed on the event loop after the scheduler has
        # finished with them: trim again when no request is left (idle only: a trim blocks the
        # event loop for tens of milliseconds; the scheduler trims as its rows halve).
        self.trimmer = Trimmer(enabled=trim_memory, on_halving=False)
        self.gate = AdmissionGate(
            limits.max_concurrent_requests,
            limits.max_queued_requests,
            limits.retry_after_seconds,
            on_change=self.trimmer.observe,
        )
        self.finished: Counter[str] = Counter()  # requests by outcome: completed, failed, disconnected
        self.started = time.time()

    def served_names(self) -> set[str]:
        return {self.model_name, self.runtime.model_name}


def create_app(
    runtime: Any,
    *,
    model_name: str = "stars",
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    log_prompts: bool = False,
    trim_memory: bool | None = None,
) -> FastAPI:
    """An OpenAI-compatible app generating with `runtime` (its default config and reward apply
    to every request unless the request overrides them). `trim_memory` (default: on unless
    STARS_MALLOC_TRIM=0) gives freed memory back to the system as the load drops."""
    limits = limits or ServerLimits()
    state = ServerState(
        runtime, model_name=model_name, api_key=api_key, limits=limits, log_prompts=log_prompts, trim_memory=trim_memory
    )
    app = FastAPI(title="stars serve", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stars = state
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    _install_error_handlers(app)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        check_api_key(authorization, state.api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": state.model_name,
            "policy": runtime.model_name,
            "active_requests": state.gate.active,
            "queued_requests": state.gate.queued,
            "scheduler_busy": runtime.scheduler.busy,
            "requests": dict(state.finished),
            "rss_mib": resident_mib(),
        }

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> dict[str, Any]:
        card = {
            "id": state.model_name,
            "object": "model",
            "created": int(state.started),
            "owned_by": "stars-plugins",
            "root": runtime.model_name,
            "max_model_len": runtime.context_window,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await _generate(state, body, request, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await _generate(state, body, request, chat=False)

    return app


async def _generate(
    state: ServerState, body: ChatCompletionRequest | CompletionRequest, request: Request, *, chat: bool
) -> Any:
    if body.model not in state.served_names():
        raise APIError(
            404,
            f"model {body.model!r} is not served here; use {state.model_name!r}",
            param="model",
            code="model_not_found",
        )
    plan = await asyncio.to_thread(plan_request, body, state.runtime, state.limits)  # may load the reward
    prompt_param = "messages" if chat else "prompt"
    shape = ResponseShape(chat, state.model_name)
    await state.gate.acquire()
    events = run_choices(plan)
    try:
        first = await anext(events)
    except BaseException:
        state.gate.release()
        await events.aclose()
        raise
    if first.error is not None and first.result is None:  # the request itself is invalid: an HTTP error
        state.gate.release()
        await events.aclose()
        state.finished["failed"] += 1
        raise api_error_for(first.error, prompt_param=prompt_param)
    if plan.stream:
        stream = _sse_stream(state, plan, shape, first, events, prompt_param)
        return ClosingStreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
    try:
        rest = await _until_disconnected(request, _drain(events))
        if rest is None:  # the client left: its choices were cancelled, nobody reads an answer
            state.finished["disconnected"] += 1
            return Response(status_code=499)
        return _collect(state, plan, shape, first, rest, prompt_param)
    finally:
        state.gate.release()
        await _close_quietly(events)


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body when the response ends, however it ends.

    When the client hangs up, Starlette stops iterating the body (the send fails, or its disconnect
    listener cancels the stream) but leaves the async generator suspended at its `yield`; only the
    garbage collector would finalize it, and until then its `finally` (releasing the admission slot,
    cancelling the choices, dropping the request state) does not run. Closing it here frees them
    at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


async def _drain(events: AsyncIterator[ChoiceEvent]) -> list[ChoiceEvent]:
    return [event async for event in events]


async def _until_disconnected(request: Request, work: Any, poll: float = 0.25) -> Any:
    """Await `work`, cancelling it (and returning None) if the client disconnects meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            if await request.is_disconnected():
                return None
    finally:
        task.cancel()


def _collect(
    state: ServerState, plan: Plan, shape: ResponseShape, first: ChoiceEvent, rest: list[ChoiceEvent], prompt_param: str
) -> dict[str, Any]:
    texts: dict[int, str] = {}
    results = {}
    for event in [first, *rest]:
        if event.error is not None:
            state.finished["failed"] += 1
            raise api_error_for(event.error, prompt_param=prompt_param)
        texts[event.index] = texts.get(event.index, "") + event.text
        if event.result is not None:
            results[event.index] = event.result
    state.finished["completed"] += 1
    _log(state, plan, results)
    return shape.completion(texts, results, plan.prompt_of)


async def _sse_stream(
    state: ServerState,
    plan: Plan,
    shape: ResponseShape,
    first: ChoiceEvent,
    events: AsyncIterator[ChoiceEvent],
    prompt_param: str,
) -> AsyncIterator[bytes]:
    """SSE chunks in OpenAI's format. A client that disconnects closes this generator (Starlette
    cancels it), which cancels every choice at its next round and frees the slot."""
    usage = plan.include_usage
    results = {}
    calls_sent: dict[int, int] = {}  # tool calls streamed per choice (their delta index)
    outcome = "disconnected"
    try:
        if shape.chat:
            for choice in plan.choices:
                yield sse(shape.chunk(choice.index, role=True, with_usage=usage))
        event: ChoiceEvent | None = first
        while event is not None:
            if event.error is not None:
                outcome = "failed"
                error = api_error_for(event.error, prompt_param=prompt_param)
                yield sse(error.body())
                yield sse("[DONE]")
                return
            if event.text:
                yield sse(shape.chunk(event.index, event.text, with_usage=usage))
            if event.tool_calls and shape.chat:
                first_call = calls_sent.get(event.index, 0)
                numbered = list(enumerate(event.tool_calls, start=first_call))
                calls_sent[event.index] = first_call + len(numbered)
                yield sse(shape.chunk(event.index, tool_calls=numbered, with_usage=usage))
            if event.result is not None:
                results[event.index] = event.result
                yield sse(shape.chunk(event.index, None if shape.chat else "", result=event.result, with_usage=usage))
            event = await anext(events, None)
        if usage:
            yield sse(shape.usage_chunk(results, plan.prompt_of))
        yield sse("[DONE]")
        outcome = "completed"
        _log(state, plan, results)
    finally:
        state.finished[outcome] += 1
        state.gate.release()
        await _close_quietly(events)


async def _close_quietly(events: AsyncIterator[ChoiceEvent]) -> None:
    # Being cancelled ourselves (the client left), this await is cancelled too: run_choices' finally
    # has already flagged every choice, so nothing is lost by suppressing that.
    with contextlib.suppress(BaseException):
        await events.aclose()  # type: ignore[attr-defined]


def _log(state: ServerState, plan: Plan, results: dict[int, Any]) -> None:
    tokens = sum(r.stats.accepted_tokens for r in results.values())
    logger.info("request done: %d choice(s), %d tokens", len(results), tokens)
    if state.log_prompts:
        for choice in plan.choices:
            result = results.get(choice.index)
            logger.info("prompt %r -> %r", choice.prompt, result.text if result else None)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _param_from_loc(first.get("loc", ()))
        message = first.get("msg", "invalid request")
        if first.get("type") == "extra_forbidden":
            message = f"unrecognized request argument: {param}"
        elif param:
            message = f"{param}: {message}"
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(str(exc.detail), type=kind), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return JSONResponse(error_body(f"internal error ({type(exc).__name__})", type="server_error"), status_code=500)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param_from_loc(loc: Any) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages.0.role'; union type tags are dropped."""
    parts = []
    for part in list(loc)[1:] if loc and loc[0] == "body" else list(loc):
        text = str(part)
        if text.lower() in _TYPE_TAGS or "[" in text:
            break
        parts.append(text)
    return ".".join(parts) or None
