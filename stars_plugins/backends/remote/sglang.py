"""SGLang's native `POST /generate` with `input_ids`; generated ids come back in `output_ids`.

`meta_info.finish_reason` is `{"type": "stop", "matched": <EOS id>}` at EOS (the EOS id is the
last of `output_ids`) and `{"type": "length", ...}` at the token budget. `sampling_seed` is
honoured by servers started with deterministic sampling (see docs/serving.md). A constrained
request carries `json_schema`, `regex` or `ebnf` in `sampling_params`, see `structured.py`.
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
from stars_plugins.backends.remote.structured import sglang_fields
from stars_plugins.errors import ServingError


class SGLangProtocol:
    name: ClassVar[str] = "sglang"
    generate_path: ClassVar[str] = "/generate"

    def request_body(self, request: SegmentRequest, model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "input_ids": list(request.prompt),
            "sampling_params": {
                "max_new_tokens": request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "top_k": request.top_k if request.top_k > 0 else -1,
                "min_p": 0.0,
                "repetition_penalty": 1.0,
                "presence_penalty": 0.0,
                "frequency_penalty": 0.0,
                "sampling_seed": request.seed,
            },
            "stream": False,
        }
        if request.top_logprobs:
            body.update(return_logprob=True, top_logprobs_num=request.top_logprobs)
        if request.constraint is not None:
            body["sampling_params"].update(sglang_fields(request.constraint))
        return body

    def parse_response(self, body: Any, request: SegmentRequest) -> SegmentResult:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        if not isinstance(body, dict):
            raise ServingError(f"SGLang answered /generate with {type(body).__name__}, expected an object")
        meta = body.get("meta_info") if isinstance(body.get("meta_info"), dict) else {}
        finish = meta.get("finish_reason") if isinstance(meta.get("finish_reason"), dict) else {}
        if finish.get("type") == "abort":
            raise ServingError(f"SGLang aborted the request: {finish.get('message') or finish}")
        tokens = checked_tokens(self.name, body.get("output_ids"), request)
        top = None
        if request.top_logprobs and isinstance(meta.get("output_top_logprobs"), list):
            top = [
                {int(item[1]): float(item[0]) for item in entry or [] if item and item[0] is not None}
                for entry in meta["output_top_logprobs"]
            ]
        top = checked_top_logprobs(self.name, top, tokens, request)
        return SegmentResult(tokens, finish.get("type") == "stop", top)

    def server_info(self, models: Any) -> ServerInfo:
        return max_model_len_info(models)
