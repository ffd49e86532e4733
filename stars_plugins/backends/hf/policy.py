"""`HFPolicy`: a transformers causal LM and its tokenizer, the in-process `PolicyBackend`."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.backends.hf.batch import LockstepBatch
from stars_plugins.backends.sampling import RowSampling
from stars_plugins.constraints import Constraint, ConstraintCompiler
from stars_plugins.prompts import PromptRenderer, TokenizerSide

_DEFAULT_CONTEXT = 2048


class HFPolicy(TokenizerSide):
    """Owns one loaded model. Shared by every runtime, adapter and config that names it.
    Implements `PolicyBackend`: its batches are `LockstepBatch`es over one KV cache."""

    supports_boundary = True  # logits are at hand before every token: CARDS boundaries work
    per_row_clocks = True  # LockstepBatch: begin / advance per row, one KV cache
    supports_constraints = True  # the batched sampler masks constrained rows (structured output)

    def __init__(self, model: Any, tokenizer: Any, *, name: str, key: tuple[Any, ...] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.key = key
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = self._pad_id()
        self.context_window = self._context_window()
        self.renderer = PromptRenderer(tokenizer, name, self.context_window)
        params = inspect.signature(model.forward).parameters
        self.supports_logits_to_keep = "logits_to_keep" in params
        self.supports_position_ids = "position_ids" in params
        # transformers renamed `past_key_values` to `cache` (5.2x); speak whichever this model speaks.
        self.cache_argument = "cache" if "cache" in params else "past_key_values"
        self._constraint_compiler: ConstraintCompiler | None = None
        self._compiler_lock = threading.Lock()

    # ---------------------------------------------------------------- model facts
    @property
    def device(self) -> torch.device:
        return self.model.device

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

    # ---------------------------------------------------------------- constraints
    @property
    def constraint_compiler(self) -> ConstraintCompiler:
        """Compiles structured-output constraints for this vocabulary (built on first use)."""
        with self._compiler_lock:
            if self._constraint_compiler is None:
                width = getattr(self.model.config, "vocab_size", None) or len(self.tokenizer)
                self._constraint_compiler = ConstraintCompiler(
                    self.tokenizer, max(int(width), len(self.tokenizer)), self.eos_token_ids
                )
            return self._constraint_compiler

    def compile_constraint(self, constraint: Constraint) -> Any:
        return self.constraint_compiler.compile(constraint)

    # ---------------------------------------------------------------- batches
    def open_batch(
        self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ) -> LockstepBatch:
        """Prefill `prompts` (prompt i on `copies[i]` rows) in one lockstep KV-cache batch."""
        return LockstepBatch(self, prompts, copies, sampling)

    def __repr__(self) -> str:
        return f"HFPolicy({self.name!r}, device={self.device}, context_window={self.context_window})"
