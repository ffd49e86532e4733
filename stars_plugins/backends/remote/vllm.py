"""vLLM's OpenAI-compatible server: `POST /v1/completions` with a token-id prompt.

Generated ids come back in `choices[0].token_ids` (`return_token_ids`, vLLM >= 0.10.2). Older
servers are read through `logprobs` with `return_tokens_as_token_ids`, where every token is the
string "token_id:<id>". `finish_reason` "stop" with no stop strings sent means EOS (or a stop
token id of the model's generation config); vLLM keeps that token in `token_ids`. A constrained
request carries `structured_outputs` (older servers: `guided_*`), see `structured.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stars_plugins.backends.remote.protocol import (
    SegmentRequest,
    SegmentResult,
    ServerInfo,
    checked_tokens,
    checked_top_logprobs,
    max_model_len_info,
)
from stars_plugins.backends.remote.structured import vllm_fields
from stars_plugins.errors import ServingError


class VLLMProtocol:
    name: ClassVar[str] = "vllm"
    generate_path: ClassVar[str] = "/v1/completions"

    def __init__(self, legacy_token_ids: bool = False):
        self.legacy_token_ids = legacy_token_ids  # a server older than `return_token_ids`

    def request_body(self, request: SegmentRequest, model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": list(request.prompt),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k if request.top_k > 0 else -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "seed": request.seed,
            "n": 1,
            "stream": False,
        }
        if model:
            body["model"] = model
        if self.legacy_token_ids or request.top_logprobs:
            body.update(logprobs=request.top_logprobs, return_tokens_as_token_ids=True)
        if not self.legacy_token_ids:
            body["return_token_ids"] = True
        if request.constraint is not None:
            body.update(vllm_fields(request.constraint, legacy=self.legacy_token_ids))
        return body

    def parse_response(self, body: Any, request: SegmentRequest) -> SegmentResult:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ServingError(f"vLLM answered /v1/completions without choices: {str(body)[:200]}")
        choice = choices[0]
        tokens = choice.get("token_ids")
        if tokens is None and isinstance(choice.get("logprobs"), dict):
            tokens = [_id_of(t) for t in choice["logprobs"].get("tokens") or []]
        tokens = checked_tokens(self.name, tokens, request)
        top = None
        if request.top_logprobs and isinstance(choice.get("logprobs"), dict):
            top = [
                {_id_of(k): float(v) for k, v in (entry or {}).items() if _id_of(k) is not None}
                for entry in choice["logprobs"].get("top_logprobs") or []
            ]
        return SegmentResult(
            tokens, choice.get("finish_reason") == "stop", checked_top_logprobs(self.name, top, tokens, request)
        )

    def server_info(self, models: Any) -> ServerInfo:
        return max_model_len_info(models)


def _id_of(token: Any) -> int | None:
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token.removeprefix("token_id:"))
        except ValueError:
            return None
    return None


def supports_token_ids(version: str | None) -> bool:
    """Whether a vLLM version string is at least 0.10.2 (which added `return_token_ids`)."""
    if not version:
        return True
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts))) >= (0, 10, 2)
