"""A constraint compiled for one policy's vocabulary (xgrammar `CompiledGrammar`), cached.

Compiling needs the tokenizer's vocabulary and the model's logits width (which can exceed the
tokenizer's vocabulary: padded embedding matrices). One `ConstraintCompiler` per loaded policy,
one compiled grammar per distinct `Constraint` (constraints are hashable values).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from stars_plugins.constraints.spec import Constraint
from stars_plugins.errors import ConstraintError


class ConstraintCompiler:
    """Compiles constraints for one tokenizer; thread-safe, with an LRU-free dict cache (a server
    sees few distinct schemas; `clear()` empties it)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]):
        import xgrammar

        self.vocab_size = int(vocab_size)
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        info = xgrammar.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(self.stop_token_ids) or None
        )
        self._setup(info)

    @classmethod
    def from_tokenizer_info(cls, info: Any) -> ConstraintCompiler:
        """A compiler over an `xgrammar.TokenizerInfo` (any vocabulary, e.g. a toy one in tests)."""
        compiler = cls.__new__(cls)
        compiler.vocab_size = int(info.vocab_size)
        compiler.stop_token_ids = tuple(int(t) for t in info.stop_token_ids)
        compiler._setup(info)
        return compiler

    def _setup(self, info: Any) -> None:
        import xgrammar

        self.tokenizer_info = info
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=2)
        self._cache: dict[tuple[Constraint, bool], Any] = {}
        self._lock = threading.Lock()

    def compile(self, constraint: Constraint, *, any_whitespace: bool = False) -> Any:
        """The `xgrammar.CompiledGrammar` of `constraint` for this vocabulary (`any_whitespace`:
        JSON with any whitespace, for checking unmasked output; see `Constraint.engine_grammar`)."""
        key = (constraint, any_whitespace)
        with self._lock:
            compiled = self._cache.get(key)
            if compiled is None:
                try:
                    grammar = constraint.engine_grammar(any_whitespace=any_whitespace)
                    compiled = self._compiler.compile_grammar(grammar)
                except Exception as exc:
                    raise ConstraintError(f"{constraint.kind}: cannot compile for this tokenizer: {exc}") from None
                self._cache[key] = compiled
            return compiled

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
