"""What every engine protocol module provides: one segment request in, its token ids out.

A segment request is "continue these exact token ids by at most K tokens with these sampling
settings and this seed"; its result is the generated token ids (the EOS token included when the
engine stopped on one) and whether it stopped on EOS. Each engine module (`llamacpp`, `vllm`,
`sglang`) turns the one into its request body and its response body into the other; nothing else
in the package knows an engine's wire format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from stars_plugins.errors import ServingError

if TYPE_CHECKING:
    from stars_plugins.constraints import Constraint


@dataclass(frozen=True)
class SegmentRequest:
    prompt: Sequence[int]  # the exact prefix, as token ids (never text)
    max_tokens: int
    temperature: float  # 0: greedy
    top_k: int  # 0: no top-k cut
    top_p: float
    seed: int
    top_logprobs: int = 0  # > 0: also return the N most likely tokens' logprobs before each token
    # structured output: the whole answer, from its start, under the engine's own grammar parameter
    # (`structured.py`); only ever sent with a prompt that holds no generated token yet
    constraint: Constraint | None = None


@dataclass(frozen=True)
class SegmentResult:
    tokens: list[int]  # generated ids; the EOS id is the last one when `hit_eos`
    hit_eos: bool
    # with `top_logprobs`: per generated token, {token id: logprob} of the most likely tokens of the
    # model's distribution before that token was drawn
    top_logprobs: list[dict[int, float]] | None = None


@dataclass(frozen=True)
class ServerInfo:
    """What a server says about itself: the served model's name and its context window."""

    model: str | None = None
    context_window: int | None = None


class EngineProtocol(Protocol):
    name: ClassVar[str]
    generate_path: ClassVar[str]  # relative to the server's root URL

    def request_body(self, request: SegmentRequest, model: str | None) -> dict[str, Any]: ...

    def parse_response(self, body: Any, request: SegmentRequest) -> SegmentResult: ...

    def server_info(self, models: Any) -> ServerInfo:
        """Read the answer of `GET /v1/models`."""
        ...


def checked_tokens(engine: str, tokens: Any, request: SegmentRequest) -> list[int]:
    """The generated ids as a list of ints, never more than were asked for."""
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ServingError(
            f"{engine} returned no token ids for a segment (got {type(tokens).__name__}); "
            "this engine version may not support returning ids"
        )
    if len(tokens) > request.max_tokens:
        raise ServingError(f"{engine} returned {len(tokens)} tokens where at most {request.max_tokens} were asked for")
    return tokens


def checked_top_logprobs(
    engine: str, top: list[dict[int, float]] | None, tokens: list[int], request: SegmentRequest
) -> list[dict[int, float]] | None:
    if not request.top_logprobs:
        return None
    if top is None or len(top) != len(tokens) or not all(top):
        raise ServingError(
            f"{engine} did not return the top {request.top_logprobs} logprobs of every generated "
            "token, which entropy-delimited segments (strategy='cards') need"
        )
    return top


def first_model(models: Any) -> dict[str, Any]:
    """The first entry of an OpenAI-style model list (`{"data": [...]}`), or {}."""
    data = models.get("data") if isinstance(models, dict) else None
    return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}


def max_model_len_info(models: Any) -> ServerInfo:
    """`/v1/models` as vLLM and SGLang answer it: the first model's id and its `max_model_len`."""
    entry = first_model(models)
    return ServerInfo(entry.get("id"), positive_int(entry.get("max_model_len")))


def positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None
