"""Whether an output (token ids or text) fits a constraint: for engines that cannot enforce the
constraint while sampling (a serving engine without structured-output parameters), a candidate
segment whose output so far cannot be completed to a valid one is rejected at the segment
boundary; a finished response must be a complete match.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from enum import Enum
from typing import Any

from stars_plugins.constraints.compiled import ConstraintCompiler
from stars_plugins.constraints.spec import Constraint


class Validity(Enum):
    INVALID = "invalid"  # no continuation makes it valid: reject
    PARTIAL = "partial"  # a valid prefix: can still be completed
    COMPLETE = "complete"  # a complete match (it may still go on, e.g. regex "a+")


class ConstraintChecker:
    """Checks outputs against one constraint for one vocabulary.

    `check_tokens(ids)` feeds the ids to a fresh matcher (the stop token, if last, ends it);
    `check_text(text)` feeds the text's bytes, for engines that return text only. Both say whether
    the output is invalid, a valid prefix or a complete match. JSON may use any whitespace here
    (the model wrote it without the mask); `any_whitespace=False` checks the masked layout.
    """

    def __init__(self, constraint: Constraint, compiler: ConstraintCompiler, *, any_whitespace: bool = True):
        self.constraint = constraint
        self.compiler = compiler
        self.compiled = compiler.compile(constraint, any_whitespace=any_whitespace)

    def _matcher(self) -> Any:
        import xgrammar

        return xgrammar.GrammarMatcher(self.compiled)

    def check_tokens(self, token_ids: Sequence[int]) -> Validity:
        matcher = self._matcher()
        for token in token_ids:
            if matcher.is_terminated() or not matcher.accept_token(int(token)):
                return Validity.INVALID
        return self._state(matcher)

    def check_text(self, text: str) -> Validity:
        matcher = self._matcher()
        if text and not matcher.accept_string(text):
            return Validity.INVALID
        return self._state(matcher)

    @staticmethod
    def _state(matcher: Any) -> Validity:
        return Validity.COMPLETE if matcher.is_completed() or matcher.is_terminated() else Validity.PARTIAL


_compilers: weakref.WeakKeyDictionary[Any, ConstraintCompiler] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def compiler_for(policy: Any) -> ConstraintCompiler:
    """The policy's constraint compiler (its own, else one built once for its tokenizer)."""
    own = getattr(policy, "constraint_compiler", None)
    if own is not None:
        return own
    with _lock:
        compiler = _compilers.get(policy)
        if compiler is None:
            tokenizer = policy.tokenizer
            compiler = _compilers[policy] = ConstraintCompiler(tokenizer, len(tokenizer), policy.eos_token_ids)
        return compiler


def checker_for(policy: Any, constraint: Constraint) -> ConstraintChecker:
    """A checker of `constraint` over the policy's vocabulary."""
    return ConstraintChecker(constraint, compiler_for(policy))
