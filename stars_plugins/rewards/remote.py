"""`RemoteReward`: a reward model served by an engine's classification endpoint.

vLLM (`vllm serve <classifier> --task classify`, older `--runner pooling`) answers `POST /classify`
and SGLang (`--is-embedding` with a sequence classifier) answers `POST /v1/classify` with the same
body: `{"model", "input": [texts]}` in, `{"data": [{"index", "label", "probs", "num_classes"}]}`
out. Every (prompt, response) pair of a round goes in one call, rendered as a user turn and an
assistant turn with the reward model's own tokenizer and chat template (plain "prompt\\nresponse"
without one). The score is `probs[label_index]` (default: the last class, the "positive" label of
a two-class classifier; the only value of a one-label reward model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from stars_plugins.backends.remote.detect import server_root
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.errors import RewardError

CLASSIFY_PATHS = {"vllm": "/classify", "sglang": "/v1/classify"}


class RemoteReward:
    def __init__(
        self,
        url: str,
        *,
        tokenizer: Any = None,
        engine: str = "vllm",
        model: str | None = None,
        label_index: int = -1,
        default_target: float | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: HttpTransport | None = None,
    ):
        if engine not in CLASSIFY_PATHS:
            raise ValueError(f"engine={engine!r}: remote rewards are served by {', '.join(CLASSIFY_PATHS)}")
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
        self.url = server_root(url) + CLASSIFY_PATHS[engine]
        self.tokenizer = tokenizer
        self.model = model
        self.label_index = label_index
        self.default_target = default_target
        self.name = f"{engine}:{model or url}"
        self.transport = transport or HttpTransport(api_key=api_key, timeout=timeout)

    def render(self, prompt: str, response: str) -> str:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt}\n{response}"

    def request_body(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"input": [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]}
        if self.model:
            body["model"] = self.model
        return body

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if not responses:
            return []
        answer = self.transport.post_json(self.url, self.request_body(prompts, responses))
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(responses):
            raise RewardError(
                f"{self.url} returned {len(data) if isinstance(data, list) else 'no'} "
                f"classifications for {len(responses)} texts"
            )
        scores: list[float] = [float("nan")] * len(responses)
        for position, item in enumerate(data):
            probs = item.get("probs") if isinstance(item, dict) else None
            if not isinstance(probs, list) or not probs:
                raise RewardError(f"{self.url} returned a classification without probs: {str(item)[:200]}")
            scores[int(item.get("index", position))] = float(probs[self.label_index])
        return scores

    def __repr__(self) -> str:
        return f"RemoteReward({self.url!r})"
