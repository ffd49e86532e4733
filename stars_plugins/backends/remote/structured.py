"""A request's constraint in each serving engine's own structured-output parameters.

An engine applies its grammar to the tokens it generates in one request, from the grammar's
start: it cannot resume a grammar mid-way from a prefix the client sends back. So a constrained
request on an engine is generated in ONE round (its whole answer, `max_new_tokens`), with the
engine's parameter carrying the constraint, and is judged whole; a rejection resamples the whole
answer (docs/serving.md, "Structured output"). The returned ids are the engine's own, as for
every round, and the client checks them against the constraint (`ConstraintChecker`) before the
reward sees them.

- llama.cpp `/completion`: `json_schema` (JSON Schema and any JSON object) or `grammar` (GBNF:
  choices and EBNF/GBNF grammars); no regular expressions, no Lark.
- vLLM `/v1/completions`: `structured_outputs` {`json` | `json_object` | `regex` | `choice` |
  `grammar`} (vLLM >= 0.10.2; older servers: `guided_json` / `guided_regex` / `guided_choice` /
  `guided_grammar`).
- SGLang `/generate`: `sampling_params` `json_schema` (text) | `regex` | `ebnf`; no Lark.
"""

from __future__ import annotations

import json
from typing import Any

from stars_plugins.constraints import Constraint
from stars_plugins.errors import ConstraintError

ANY_OBJECT = {"type": "object"}


class EngineConstraintError(ConstraintError):
    """The serving engine cannot carry this kind of constraint; the message says what it takes."""


def _schema(constraint: Constraint) -> dict[str, Any]:
    """The JSON Schema to send. With `strict` (the default), objects that do not say otherwise get
    `additionalProperties: false`, as the client-side grammar enforces them: the engine then
    generates what the client accepts."""
    schema = constraint.schema if constraint.kind == "json_schema" else dict(ANY_OBJECT)
    return _closed(schema) if constraint.kind == "json_schema" and constraint.strict else schema  # type: ignore[arg-type]


_SUBSCHEMA = ("additionalProperties", "items", "propertyNames", "contains", "not", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def _closed(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` on every object schema that lists properties
    and does not say (walking subschemas only: `const`, `enum` and `default` values are data)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA:
        if isinstance(out.get(key), dict):
            out[key] = _closed(out[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_closed(s) for s in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _closed(s) for name, s in out[key].items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF / xgrammar-EBNF string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def choice_grammar(options: tuple[str, ...]) -> str:
    return "root ::= " + " | ".join(gbnf_literal(o) for o in options)


def _refuse(engine: str, constraint: Constraint, takes: str, instead: str) -> EngineConstraintError:
    return EngineConstraintError(
        f"{engine} cannot carry a {constraint.kind}{_syntax(constraint)} constraint: its server takes {takes}. "
        f"{instead}"
    )


def _syntax(constraint: Constraint) -> str:
    return f" ({constraint.syntax})" if constraint.kind == "grammar" else ""


def llamacpp_fields(constraint: Constraint) -> dict[str, Any]:
    if constraint.kind in ("json_schema", "json_object"):
        return {"json_schema": _schema(constraint)}
    if constraint.kind == "choice":
        return {"grammar": choice_grammar(constraint.options)}
    if constraint.kind == "grammar" and constraint.syntax in ("ebnf", "gbnf"):
        return {"grammar": constraint.source}
    raise _refuse(
        "llama.cpp",
        constraint,
        "JSON Schema, a JSON object, a choice or a GBNF grammar",
        "Write it as a GBNF grammar (Constraint.grammar(text, syntax='gbnf')), or run the policy in process.",
    )


def vllm_fields(constraint: Constraint, legacy: bool = False) -> dict[str, Any]:
    kind = constraint.kind
    if legacy:  # vLLM < 0.10.2: the guided_* fields (removed in 0.12)
        if kind in ("json_schema", "json_object"):
            return {"guided_json": _schema(constraint)}
        if kind == "choice":
            return {"guided_choice": list(constraint.options)}
        return {f"guided_{kind}": constraint.source}
    if kind == "json_schema":
        params: dict[str, Any] = {"json": _schema(constraint)}
    elif kind == "json_object":
        params = {"json_object": True}
    elif kind == "choice":
        params = {"choice": list(constraint.options)}
    else:
        params = {kind: constraint.source}  # regex, grammar (vLLM reads EBNF/GBNF and Lark)
    return {"structured_outputs": params}


def sglang_fields(constraint: Constraint) -> dict[str, Any]:
    if constraint.kind in ("json_schema", "json_object"):
        return {"json_schema": json.dumps(_schema(constraint), separators=(",", ":"))}
    if constraint.kind == "regex":
        return {"regex": constraint.source}
    if constraint.kind == "choice":
        return {"ebnf": choice_grammar(constraint.options)}
    if constraint.syntax in ("ebnf", "gbnf"):
        return {"ebnf": constraint.source}
    raise _refuse(
        "SGLang",
        constraint,
        "JSON Schema, a regular expression, a choice or an EBNF grammar",
        "Write it as an EBNF grammar (Constraint.grammar(text, syntax='ebnf')).",
    )


#: engine name -> the function giving its structured-output fields (raises `EngineConstraintError`).
ENGINE_FIELDS = {"llama.cpp": llamacpp_fields, "vllm": vllm_fields, "sglang": sglang_fields}


def check_engine_takes(engine: str, constraint: Constraint) -> None:
    """Raise `EngineConstraintError` now (before any request) if `engine` cannot carry `constraint`."""
    fields = ENGINE_FIELDS.get(engine)
    if fields is not None:
        fields(constraint)
