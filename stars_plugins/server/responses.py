"""OpenAI response bodies and SSE chunks, plus the `stars` extension field.

Every choice carries `stars`: the strategy, the final reward, the request's own finish reason
(`eos`, `stop`, `length`) and its `GenerationStats` (accepted / sampled / discarded tokens, rounds,
rejections, reward calls, seconds). In a stream it rides on the choice's last chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from stars_plugins.calls import token_usage
from stars_plugins.errors import (
    ConfigError,
    PromptError,
    PromptTooLongError,
    RewardError,
    StarsError,
    UnknownRewardError,
    UnknownStrategyError,
)
from stars_plugins.results import GenerationResult
from stars_plugins.server.errors import APIError

_FINISH_REASONS = {
    "eos": "stop",
    "stop": "stop",
    "length": "length",
    "constraint_incomplete": "length",  # the budget ran out before the constrained output was complete
    "cancelled": "stop",
    "error": "stop",
}


def openai_finish_reason(result: GenerationResult) -> str:
    return _FINISH_REASONS.get(result.finish_reason, "stop")


def stars_extension(result: GenerationResult) -> dict[str, Any]:
    return {
        "strategy": result.strategy,
        "reward": result.reward,
        "finish_reason": result.finish_reason,
        "stats": result.stats.as_dict(),
    }


def usage(results: dict[int, GenerationResult], prompt_of: dict[int, int]) -> dict[str, int]:
    """The one usage formula (`calls.token_usage`) over a request's choices: each distinct prompt
    once (n choices share it), every choice's accepted tokens."""
    return token_usage(list(results.values()), [prompt_of[i] for i in results])


def api_error_for(exc: BaseException, *, prompt_param: str) -> APIError:
    """The HTTP error a failed choice becomes (messages never quote the prompt)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, PromptTooLongError):
        return APIError(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, PromptError):
        return APIError(400, str(exc), param=prompt_param)
    if isinstance(exc, UnknownRewardError):
        return APIError(400, str(exc), param="stars.reward")
    if isinstance(exc, ConfigError | UnknownStrategyError):
        return APIError(400, str(exc), param="stars")
    if isinstance(exc, RewardError):
        return APIError(
            500, f"the reward model failed for this request: {exc}", type="server_error", code="reward_error"
        )
    if isinstance(exc, StarsError):
        return APIError(500, str(exc), type="server_error")
    return APIError(500, f"internal error ({type(exc).__name__})", type="server_error")


class ResponseShape:
    """Builds the bodies of one request: chat.completion(.chunk) or text_completion."""

    def __init__(self, chat: bool, model: str):
        self.chat = chat
        self.model = model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    # ----------------------------------------------------------------- whole responses
    def completion(
        self, texts: dict[int, str], results: dict[int, GenerationResult], prompt_of: dict[int, int]
    ) -> dict[str, Any]:
        choices = []
        for index in sorted(results):
            result = results[index]
            choice: dict[str, Any] = {"index": index}
            if self.chat:
                choice["message"] = {"role": "assistant", "content": texts.get(index, ""), "refusal": None}
            else:
                choice["text"] = texts.get(index, "")
            choice.update(logprobs=None, finish_reason=openai_finish_reason(result), stars=stars_extension(result))
            choices.append(choice)
        return {**self._envelope(False), "choices": choices, "usage": usage(results, prompt_of)}

    # ----------------------------------------------------------------- stream chunks
    def chunk(
        self,
        index: int,
        text: str | None = None,
        *,
        role: bool = False,
        result: GenerationResult | None = None,
        with_usage: bool = False,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice["logprobs"] = None
        choice["finish_reason"] = None if result is None else openai_finish_reason(result)
        if result is not None:
            choice["stars"] = stars_extension(result)
        body = {**self._envelope(True), "choices": [choice]}
        if with_usage:
            body["usage"] = None  # OpenAI sends usage: null on every chunk but the last one
        return body

    def usage_chunk(self, results: dict[int, GenerationResult], prompt_of: dict[int, int]) -> dict[str, Any]:
        return {**self._envelope(True), "choices": [], "usage": usage(results, prompt_of)}


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
