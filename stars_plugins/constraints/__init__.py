"""Structured output: constraints (JSON Schema, any JSON object, regex, choice, grammar) enforced
token by token in the batched sampler, with grammar state that follows STARS rows through
rejection (rollback), acceptance (copy to siblings) and release. See docs/structured.md.

- `Constraint`: the user-facing value (`spec.py`), checked at construction (`ConstraintError`);
- `ConstraintCompiler`: a constraint compiled for one vocabulary (`compiled.py`);
- `RowGrammar` / `GrammarRows`: per-row grammar state and token masks for the sampler (`rows.py`);
- `ConstraintChecker`: whether generated tokens or text can still be completed to a valid output,
  for engines that cannot enforce the constraint while sampling (`validity.py`).
"""

from stars_plugins.constraints.compiled import ConstraintCompiler
from stars_plugins.constraints.rows import GrammarRows, RowGrammar
from stars_plugins.constraints.spec import UNSUPPORTED_KEYWORDS, Constraint, ConstraintKind, GrammarSyntax
from stars_plugins.constraints.validity import ConstraintChecker, Validity, checker_for, compiler_for

__all__ = [
    "UNSUPPORTED_KEYWORDS",
    "Constraint",
    "ConstraintChecker",
    "ConstraintCompiler",
    "ConstraintKind",
    "GrammarRows",
    "GrammarSyntax",
    "RowGrammar",
    "Validity",
    "checker_for",
    "compiler_for",
]
