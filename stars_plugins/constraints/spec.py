"""`Constraint`: what a request's output must match (a JSON Schema, any JSON object, a regular
expression, one of several strings, or a grammar), checked when it is built.

A constraint is a small frozen value (hashable, cheap to compare), like `StarsConfig`: it knows
nothing about a tokenizer. The policy backend compiles it for its vocabulary (`compiled.py`) and
the batched sampler masks each constrained row's logits with it (`rows.py`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stars_plugins.errors import ConstraintError

ConstraintKind = Literal["json_schema", "json_object", "regex", "choice", "grammar"]
GrammarSyntax = Literal["ebnf", "gbnf", "lark"]

#: JSON Schema keywords the grammar engine (xgrammar) cannot enforce on the tokens: with
#: `strict=True` a schema using one is refused, with `strict=False` the keyword is dropped (warned)
#: and the output may not satisfy it.
UNSUPPORTED_KEYWORDS = frozenset({
    "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "contains", "minContains",
    "maxContains", "uniqueItems", "unevaluatedProperties", "unevaluatedItems",
})  # fmt: skip

# Keywords whose value is a subschema, a list of subschemas or a name -> subschema map.
_SUBSCHEMA = ("additionalProperties", "items", "propertyNames", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


@dataclass(frozen=True)
class Constraint:
    """One structured-output constraint. Build it with a class method:

    - `Constraint.json_schema(schema, strict=True)`: a JSON value valid under `schema` (a dict or
      its JSON text; a pydantic model class works through `model.model_json_schema()`);
    - `Constraint.json_object()`: any JSON object;
    - `Constraint.regex(pattern)`: text that matches `pattern` entirely;
    - `Constraint.choice(options)`: exactly one of the strings;
    - `Constraint.grammar(text, syntax="ebnf")`: text of a grammar (root rule `root`; `gbnf` is
      llama.cpp's dialect of the same EBNF; `lark`: a Lark grammar, start rule `start`).

    Each checks its input at once and raises `ConstraintError` naming the problem.
    """

    kind: ConstraintKind
    source: str  # the schema as canonical JSON text, the pattern, the grammar ('' for json_object)
    options: tuple[str, ...] = ()  # choice only
    strict: bool = True  # json_schema only: refuse keywords that cannot be enforced; no extra fields
    syntax: GrammarSyntax = "ebnf"  # grammar only

    def __post_init__(self) -> None:
        self.check()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | str, *, strict: bool = True) -> Constraint:
        return cls("json_schema", _schema_text(schema, strict), strict=bool(strict))

    @classmethod
    def json_object(cls) -> Constraint:
        return cls("json_object", "")

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        if not isinstance(pattern, str) or not pattern:
            raise ConstraintError(f"regex: the pattern must be a non-empty string, got {pattern!r}")
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: Sequence[str]) -> Constraint:
        if isinstance(options, str) or not isinstance(options, Sequence):
            raise ConstraintError(f"choice: options must be a list of strings, got {type(options).__name__}")
        options = tuple(options)
        wrong = [o for o in options if not isinstance(o, str) or not o]
        if not options or wrong:
            raise ConstraintError(f"choice: options must be a non-empty list of non-empty strings, got {options!r}")
        return cls("choice", "", options=tuple(dict.fromkeys(options)))

    @classmethod
    def grammar(cls, text: str, syntax: GrammarSyntax = "ebnf") -> Constraint:
        if syntax not in ("ebnf", "gbnf", "lark"):
            raise ConstraintError(f"grammar: unknown syntax {syntax!r}; use 'ebnf', 'gbnf' or 'lark'")
        if not isinstance(text, str) or not text.strip():
            raise ConstraintError("grammar: the grammar text must be a non-empty string")
        return cls("grammar", text, syntax=syntax)

    # ------------------------------------------------------------------ queries
    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON Schema (json_schema only)."""
        return json.loads(self.source) if self.kind == "json_schema" else None

    def check(self) -> None:
        """Parse the constraint with the grammar engine; `ConstraintError` names what is wrong.
        Runs at construction, so a `Constraint` that exists is usable."""
        if self.kind not in ("json_schema", "json_object", "regex", "choice", "grammar"):
            raise ConstraintError(f"unknown constraint kind {self.kind!r}")
        try:
            self.engine_grammar()
        except ConstraintError:
            raise
        except Exception as exc:  # xgrammar reports parse errors as RuntimeError with a C++ location
            raise ConstraintError(f"{self.kind}: {_engine_message(exc)}") from None

    def engine_grammar(self, *, any_whitespace: bool = False) -> Any:
        """This constraint as an `xgrammar.Grammar` (no tokenizer needed). JSON is generated in
        the standard compact layout (`{"a": 1, "b": [2, 3]}`): free whitespace lets small models
        spend their budget on blank lines. `any_whitespace=True` accepts any JSON whitespace
        (for checking text a model wrote without the mask)."""
        import xgrammar

        if self.kind == "json_schema":
            return xgrammar.Grammar.from_json_schema(
                self.source, strict_mode=self.strict, any_whitespace=any_whitespace
            )
        if self.kind == "json_object":
            return xgrammar.Grammar.from_json_schema(
                '{"type": "object"}', strict_mode=False, any_whitespace=any_whitespace
            )
        if self.kind == "regex":
            return xgrammar.Grammar.from_regex(self.source)
        if self.kind == "choice":
            return xgrammar.Grammar.from_ebnf("root ::= " + " | ".join(_ebnf_literal(o) for o in self.options))
        if self.syntax == "lark":
            return xgrammar.Grammar.from_lark(self.source)
        return xgrammar.Grammar.from_ebnf(self.source)

    def describe(self) -> str:
        """A short human-readable summary (for errors and logs)."""
        if self.kind == "choice":
            return f"choice among {len(self.options)} strings"
        if self.kind == "json_object":
            return "any JSON object"
        shown = self.source if len(self.source) <= 60 else self.source[:57] + "..."
        return f"{self.kind} {shown}"


def _schema_text(schema: Mapping[str, Any] | str, strict: bool) -> str:
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        schema = schema.model_json_schema()  # a pydantic model class
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ConstraintError(f"json_schema: the schema is not valid JSON: {exc}") from None
    if isinstance(schema, bool) or not isinstance(schema, Mapping):
        raise ConstraintError(f"json_schema: the schema must be a JSON object (dict), got {type(schema).__name__}")
    schema = _checked_schema(dict(schema), strict, path="#")
    _check_meta_schema(schema)
    # Key order is kept: properties are generated in the order the schema lists them.
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def _checked_schema(schema: Any, strict: bool, path: str) -> Any:
    """The schema with its unsupported keywords refused (strict) or dropped (not strict)."""
    if not isinstance(schema, Mapping):
        return schema
    out = {}
    for key, value in schema.items():
        where = f"{path}/{key}"
        if key in UNSUPPORTED_KEYWORDS:
            if strict:
                raise ConstraintError(
                    f"json_schema: keyword {key!r} at {path} cannot be enforced while generating; remove it "
                    "or pass strict=False to drop it (the output may then violate it)"
                )
            warnings.warn(f"json_schema: dropped keyword {key!r} at {path} (strict=False)", UserWarning, stacklevel=4)
            continue
        if key in _SUBSCHEMA:
            value = _checked_schema(value, strict, where)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            value = [_checked_schema(v, strict, f"{where}/{i}") for i, v in enumerate(value)]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            value = {name: _checked_schema(v, strict, f"{where}/{name}") for name, v in value.items()}
        out[key] = value
    return out


def _check_meta_schema(schema: dict[str, Any]) -> None:
    """A structurally invalid schema (e.g. `"type": 5`, `"required": "a"`) is named by jsonschema."""
    try:
        import jsonschema
    except ImportError:  # optional: xgrammar still rejects what it cannot parse
        return
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ConstraintError(f"json_schema: invalid schema at {where}: {exc.message}") from None


def _ebnf_literal(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif " " <= ch <= "~":
            escaped.append(ch)
        else:
            escaped.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(escaped) + '"'


def _engine_message(exc: BaseException) -> str:
    """xgrammar's message without its timestamp and C++ source location."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "] " in first and first.startswith("["):
        first = first.split("] ", 1)[1]
    if ": " in first and ".cc:" in first.split(": ", 1)[0]:
        first = first.split(": ", 1)[1]
    return first.removeprefix("Check failed: (error.empty()) is false: ")
