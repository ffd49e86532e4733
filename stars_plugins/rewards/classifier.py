"""Reward from any `AutoModelForSequenceClassification`, scoring text with its own tokenizer.

Policy and reward model need not share a tokenizer: the reward model sees decoded text, formatted
with its own chat template when it has one (as reward models trained on chats expect), else as a
(prompt, response) text pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.errors import ConfigError


class ClassifierReward:
    """Score = the logit of a one-label model, or the log-probability of `label` otherwise."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        label: int | str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        default_target: float | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.default_target = default_target
        self.batch_size = batch_size
        self.max_length = max_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), 4096)
        self.label_index = self._label_index(label)
        # Keep the end of long texts: that is where the response (and the newest segment) is.
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _label_index(self, label: int | str | None) -> int:
        num_labels = int(self.model.config.num_labels)
        if label is None:
            return num_labels - 1
        if isinstance(label, str):
            mapping = {k.lower(): v for k, v in (self.model.config.label2id or {}).items()}
            if label.lower() not in mapping:
                raise ConfigError(f"reward label {label!r} is not one of {sorted(mapping)}")
            return int(mapping[label.lower()])
        if not 0 <= label < num_labels:
            raise ConfigError(f"reward label index {label} is outside 0..{num_labels - 1}")
        return label

    def _encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        if getattr(self.tokenizer, "chat_template", None):
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
                )
                for p, r in zip(prompts, responses, strict=True)
            ]
            return self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
                return_tensors="pt",
            )
        return self.tokenizer(
            list(prompts),
            list(responses),
            padding=True,
            truncation="longest_first",
            max_length=self.max_length,
            return_tensors="pt",
        )

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            batch = self._encode(prompts[start : start + self.batch_size], responses[start : start + self.batch_size])
            batch = {k: v.to(self.model.device) for k, v in batch.items()}
            logits = self.model(**batch).logits.float()
            if logits.shape[-1] == 1:
                values = logits[:, 0]
            else:
                values = torch.log_softmax(logits, dim=-1)[:, self.label_index]
            scores.extend(values.cpu().tolist())
        return scores

    def __repr__(self) -> str:
        return f"ClassifierReward({self.name!r})"
