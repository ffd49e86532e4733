"""Structured output on the wire: `response_format` and the `stars` object's `regex` / `choice` /
`grammar` become the request's one `Constraint` (`stars_plugins.constraints`).

- `{"type": "text"}` or nothing: no constraint;
- `{"type": "json_object"}`: any JSON object;
- `{"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}`: the schema
  (OpenAI's shape; `client.chat.completions.parse(response_format=Model)` sends it);
- `stars.regex` (a pattern), `stars.choice` (a list of strings), `stars.grammar` (an EBNF/GBNF grammar),
  as vLLM's `structured_outputs` does.

A request carries at most one of them. Every bad constraint (a wrong shape, a schema the library
refuses, a regular expression or grammar that does not parse) is an `APIError` (HTTP 400) whose
`param` names the field, raised while the request is planned: before any model work.
"""

from __future__ import annotations

import re
from typing import Any

from stars_plugins.constraints import Constraint
from stars_plugins.errors import ConstraintError
from stars_plugins.server.errors import bad_request

#: Keys of the `stars` object that set a constraint (each is a `Constraint` constructor).
CONSTRAINT_KEYS = ("regex", "choice", "grammar")
#: OpenAI's rule for `response_format.json_schema.name`.
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_SCHEMA_KEYS = {"name", "schema", "strict", "description"}


def request_constraint(
    response_format: dict[str, Any] | None, stars: dict[str, Any] | None
) -> tuple[Constraint | None, str | None]:
    """The request's constraint and the field that set it, or (None, None). Raises `APIError` (400)
    naming the field at fault."""
    found = [(f"stars.{key}", key) for key in CONSTRAINT_KEYS if (stars or {}).get(key) is not None]
    from_format = _response_format_constraint(response_format)
    if from_format is not None:
        found.insert(0, ("response_format", "response_format"))
    if len(found) > 1:
        raise bad_request(
            f"a request takes one constraint; got {' and '.join(param for param, _ in found)}: keep one of them",
            param=found[1][0],
        )
    if from_format is not None:
        return from_format, "response_format"
    if not found:
        return None, None
    param, key = found[0]
    return _stars_constraint(key, stars[key], param), param  # type: ignore[index]


def _response_format_constraint(response_format: dict[str, Any] | None) -> Constraint | None:
    if response_format is None:
        return None
    kind = response_format.get("type")
    extra = set(response_format) - {"type", "json_schema"}
    if extra:
        key = sorted(extra)[0]
        raise bad_request(f"unrecognized response_format argument: {key}", param=f"response_format.{key}")
    if kind == "text":
        return None
    if kind == "json_object":
        if "json_schema" in response_format:
            raise bad_request(
                "response_format.json_schema goes with type 'json_schema', not 'json_object'",
                param="response_format.json_schema",
            )
        return _built(Constraint.json_object, (), "response_format")
    if kind == "json_schema":
        return _json_schema_constraint(response_format.get("json_schema"))
    raise bad_request(
        f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
        param="response_format.type",
    )


def _json_schema_constraint(spec: Any) -> Constraint:
    where = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise bad_request(
            f"{where} must be an object with 'name' and 'schema' (and optionally 'strict', 'description')",
            param=where,
        )
    extra = set(spec) - _JSON_SCHEMA_KEYS
    if extra:
        key = sorted(extra)[0]
        raise bad_request(f"unrecognized {where} argument: {key}", param=f"{where}.{key}")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise bad_request(
            f"{where}.name must be 1 to 64 letters, digits, underscores or dashes, got {name!r}", param=f"{where}.name"
        )
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad_request(f"{where}.strict must be true, false or null", param=f"{where}.strict")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request(f"{where}.description must be a string", param=f"{where}.description")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise bad_request(
            f"{where}.schema must be a JSON Schema object, got {type(schema).__name__}", param=f"{where}.schema"
        )
    return _built(Constraint.json_schema, (schema,), f"{where}.schema", strict=bool(strict))


def _stars_constraint(key: str, value: Any, param: str) -> Constraint:
    if key == "choice":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise bad_request(f"{param} must be a non-empty list of non-empty strings", param=param)
    elif not isinstance(value, str) or not value:
        raise bad_request(f"{param} must be a non-empty string", param=param)
    return _built(getattr(Constraint, key), (value,), param)


def _built(constructor: Any, args: tuple[Any, ...], param: str, **kwargs: Any) -> Constraint:
    try:
        return constructor(*args, **kwargs)
    except ConstraintError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="invalid_constraint") from None
