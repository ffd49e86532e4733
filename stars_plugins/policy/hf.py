"""`HFPolicy`: a transformers causal LM and its tokenizer, as the decoding loop needs them."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.config import StarsConfig
from stars_plugins.errors import PromptError, PromptTooLongError
from stars_plugins.policy.prompts import (
    PreparedPrompt,
    PromptInput,
    normalize_messages,
    plain_transcript,
    reward_prompt_text,
)

_DEFAULT_CONTEXT = 2048


class HFPolicy:
    """Owns one loaded model. Shared by every runtime, adapter and config that names it."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, key: tuple[Any, ...] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.key = key
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = self._pad_id()
        self.context_window = self._context_window()
        params = inspect.signature(model.forward).parameters
        self.supports_logits_to_keep = "logits_to_keep" in params
        self.supports_position_ids = "position_ids" in params
        # transformers renamed `past_key_values` to `cache` (5.2x); speak whichever this model speaks.
        self.cache_argument = "cache" if "cache" in params else "past_key_values"

    # ---------------------------------------------------------------- model facts
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _eos_ids(self) -> tuple[int, ...]:
        ids: set[int] = set()
        generation_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (generation_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, Sequence):
                ids.update(int(v) for v in value)
        return tuple(sorted(ids))

    def _pad_id(self) -> int:
        if self.tokenizer.pad_token_id is not None:
            return int(self.tokenizer.pad_token_id)
        if self.eos_token_ids:
            return self.eos_token_ids[0]
        return 0

    def _context_window(self) -> int:
        config = self.model.config
        for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 10**7:
            return limit
        return _DEFAULT_CONTEXT

    # ---------------------------------------------------------------- text <-> ids
    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def render(self, prompt: PromptInput, config: StarsConfig, index: int = 0) -> tuple[list[int], str]:
        """Token ids for the policy and the prompt text for the reward model."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise PromptError(f"prompt {index} is empty; pass some text to respond to")
            messages = [{"role": "user", "content": prompt}]
            reward_prompt = prompt
        else:
            messages = normalize_messages(prompt, index)
            reward_prompt = reward_prompt_text(messages)
        if config.system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": config.system_prompt}, *messages]

        if config.apply_chat_template and self.has_chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        elif isinstance(prompt, str):
            text = f"{config.system_prompt}\n\n{prompt}" if config.system_prompt else prompt
            ids = self.tokenizer(text)["input_ids"]
        else:
            ids = self.tokenizer(plain_transcript(messages))["input_ids"]
        return list(ids), reward_prompt

    def prepare(self, prompts: Sequence[PromptInput], config: StarsConfig) -> list[PreparedPrompt]:
        """Render every prompt and check it fits the context window with its token budget."""
        prepared = []
        budget = self.context_window - config.max_new_tokens
        for index, prompt in enumerate(prompts):
            ids, reward_prompt = self.render(prompt, config, index)
            truncated = False
            if len(ids) > budget:
                if not config.truncate_prompt or budget < 1:
                    raise PromptTooLongError(
                        f"prompt {index} has {len(ids)} tokens; with max_new_tokens={config.max_new_tokens} "
                        f"it needs {len(ids) + config.max_new_tokens}, but the context window of "
                        f"{self.name} is {self.context_window} tokens. Shorten the prompt, lower "
                        "max_new_tokens, or set truncate_prompt=True to keep the prompt's last tokens.",
                        index=index,
                        prompt_tokens=len(ids),
                        max_new_tokens=config.max_new_tokens,
                        limit=self.context_window,
                    )
                ids, truncated = ids[-budget:], True
            prepared.append(PreparedPrompt(index, prompt, tuple(ids), reward_prompt, truncated))
        return prepared

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __repr__(self) -> str:
        return f"HFPolicy({self.name!r}, device={self.device}, context_window={self.context_window})"
