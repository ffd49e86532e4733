"""llama.cpp's `llama-server`: `POST /completion` with a token-id prompt and `return_tokens`.

Every sampler that the in-process sampler does not have (min-p, typical-p, repetition penalties,
DRY, XTC, mirostat) is switched off, so temperature, top-k and top-p mean what they mean in
process. `cache_prompt` lets a slot reuse the KV cache of the longest common prefix, which makes
a resample from a rejected segment's prefix cost only the new tokens. A constrained request carries
`json_schema` or `grammar` (GBNF), see `structured.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stars_plugins.backends.remote.protocol import (
    SegmentRequest,
    SegmentResult,
    ServerInfo,
    checked_tokens,
    checked_top_logprobs,
    first_model,
    positive_int,
)
from stars_plugins.backends.remote.structured import llamacpp_fields
from stars_plugins.errors import ServingError

#: Only what the client reads comes back (the default response repeats the whole prompt as text).
RESPONSE_FIELDS = ["tokens", "stop_type", "truncated", "tokens_predicted"]


class LlamaCppProtocol:
    name: ClassVar[str] = "llama.cpp"
    generate_path: ClassVar[str] = "/completion"

    def request_body(self, request: SegmentRequest, model: str | None) -> dict[str, Any]:
        body = {
            "prompt": list(request.prompt),
            "n_predict": request.max_tokens,
            "temperature": request.temperature,
            "top_k": request.top_k,
            "top_p": request.top_p,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "dry_multiplier": 0.0,
            "xtc_probability": 0.0,
            "mirostat": 0,
            "seed": request.seed,
            "cache_prompt": True,
            "return_tokens": True,
            "stream": False,
            "response_fields": RESPONSE_FIELDS,
        }
        if request.top_logprobs:  # probabilities of the full distribution, before sampling
            body.update(
                n_probs=request.top_logprobs,
                post_sampling_probs=False,
                response_fields=[*RESPONSE_FIELDS, "completion_probabilities"],
            )
        if request.constraint is not None:
            body.update(llamacpp_fields(request.constraint))
        return body

    def parse_response(self, body: Any, request: SegmentRequest) -> SegmentResult:
        if not isinstance(body, dict):
            raise ServingError(f"llama.cpp answered /completion with {type(body).__name__}, expected an object")
        tokens = checked_tokens(self.name, body.get("tokens"), request)
        hit_eos = body.get("stop_type") == "eos"
        if body.get("truncated") and not hit_eos and len(tokens) < request.max_tokens:
            raise ServingError(
                f"llama.cpp stopped after {len(tokens)} of {request.max_tokens} tokens: the slot's context is full "
                f"({len(request.prompt)} prompt tokens). Start llama-server with a larger -c (the context is "
                "divided among the -np slots) or lower max_new_tokens"
            )
        top = None
        if request.top_logprobs and isinstance(body.get("completion_probabilities"), list):
            top = [
                {int(t["id"]): float(t["logprob"]) for t in entry.get("top_logprobs") or []}
                for entry in body["completion_probabilities"]
            ]
        return SegmentResult(tokens, hit_eos, checked_top_logprobs(self.name, top, tokens, request))

    def server_info(self, models: Any) -> ServerInfo:
        entry = first_model(models)
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        return ServerInfo(entry.get("id"), positive_int(meta.get("n_ctx")))
