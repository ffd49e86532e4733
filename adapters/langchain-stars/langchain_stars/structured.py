"""`ChatStars.with_structured_output`: the chat model bound to a `Constraint`, then a parser.

LangChain's conventions (langchain-openai, langchain-ollama): `method="json_schema"` (the default
here) constrains the output to the schema, `method="json_mode"` to any JSON object (the schema, if
given, only picks the parser), `method="function_calling"` goes through `bind_tools`. A pydantic
class gives instances of it, a TypedDict or a JSON Schema gives dicts. `include_raw=True` returns
`{"raw": AIMessage, "parsed": ..., "parsing_error": ...}` and never raises on a parse error.

The sampler enforces the constraint token by token, so the output parses; the one way it does not
is a token budget that ends before the grammar does (finish reason `constraint_incomplete`), which
is a parse error naming `max_tokens`, never a silently repaired answer.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from functools import partial
from operator import itemgetter
from typing import Any, Literal

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from stars_plugins.constraints import Constraint

Method = Literal["json_schema", "json_mode", "function_calling"]
METHODS = ("json_schema", "json_mode", "function_calling")
#: The finish reason of an answer whose token budget ended before its constraint was complete.
INCOMPLETE = "constraint_incomplete"


def structured_output(
    model: Any,
    schema: Any,
    *,
    method: str = "json_schema",
    include_raw: bool = False,
    strict: bool | None = None,
    kwargs: dict[str, Any],
) -> Runnable:
    """The runnable `ChatStars.with_structured_output` returns (see its docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; ChatStars takes one of {', '.join(METHODS)}")
    if schema is None and method != "json_mode":
        raise ValueError(f"method={method!r} needs a schema (a pydantic class, a TypedDict or a JSON Schema dict)")
    pydantic_class = isinstance(schema, type) and is_basemodel_subclass(schema)
    trace = {"kwargs": {"method": method, **({"strict": strict} if method != "json_mode" else {})}, "schema": schema}
    function_call = (
        _function_calling(model, schema, pydantic_class, trace, kwargs) if method == "function_calling" else None
    )
    if function_call is not None:
        llm, parser = function_call
    else:
        if method != "json_mode":
            constraint = Constraint.json_schema(
                json_schema_of(schema), **({} if strict is None else {"strict": strict})
            )
        else:
            constraint = Constraint.json_object()
        llm = model.bind(constraint=constraint, ls_structured_output_format=trace, **kwargs)
        parser = output_parser(schema)
    if include_raw:
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")
    return llm | parser


def output_parser(schema: Any) -> Runnable:
    """AIMessage -> the parsed object: an instance of a pydantic class, else a dict (partial dicts
    while streaming, as LangChain's JSON parser streams). An answer whose budget ended inside the
    JSON raises `OutputParserException` first, so no partial object passes as the answer."""
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser: Runnable = RunnableLambda(partial(parse_model, schema)).with_types(output_type=schema)
    else:
        parser = JsonOutputParser()
    return RunnableGenerator(_check_complete, _acheck_complete) | parser


def json_schema_of(schema: Any) -> dict[str, Any]:
    """A pydantic class (v2 or v1), a TypedDict, an OpenAI tool / function / response_format dict,
    or a JSON Schema dict (used as it is) -> the JSON Schema the constraint enforces."""
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        if hasattr(schema, "model_json_schema"):
            return schema.model_json_schema()
        return schema.schema()  # pydantic.v1
    if isinstance(schema, dict):
        if schema.get("type") == "json_schema" and isinstance(schema.get("json_schema"), dict):
            schema = schema["json_schema"]  # an OpenAI response_format
        if isinstance(schema.get("schema"), dict) and "name" in schema:
            return schema["schema"]  # {"name", "schema", "strict"}
        if schema.get("type") == "function" or ("name" in schema and "parameters" in schema):
            return convert_to_json_schema(schema)  # an OpenAI tool or function
        return schema
    return convert_to_json_schema(schema)  # a TypedDict (or anything LangChain converts)


def parse_model(schema: type, message: BaseMessage) -> Any:
    """The pydantic instance of a message's JSON text."""
    text = message.text if isinstance(message.text, str) else message.text()
    try:
        if hasattr(schema, "model_validate_json"):
            return schema.model_validate_json(text)
        return schema.parse_raw(text)  # type: ignore[attr-defined]  # pydantic.v1
    except Exception as exc:
        raise OutputParserException(f"failed to parse {schema.__name__} from {text!r}: {exc}", llm_output=text) from exc


def _incomplete(message: BaseMessage) -> None:
    if message.response_metadata.get("finish_reason") == INCOMPLETE:
        raise OutputParserException(
            "the answer reached its token budget before the JSON was complete (finish_reason "
            f"'{INCOMPLETE}'); raise max_tokens",
            llm_output=message.text if isinstance(message.text, str) else message.text(),
        )


def _check_complete(messages: Iterator[BaseMessage]) -> Iterator[BaseMessage]:
    for message in messages:
        _incomplete(message)
        yield message


async def _acheck_complete(messages: AsyncIterator[BaseMessage]) -> AsyncIterator[BaseMessage]:
    async for message in messages:
        _incomplete(message)
        yield message


def _function_calling(
    model: Any, schema: Any, pydantic_class: bool, trace: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[Runnable, Runnable] | None:
    """LangChain's convention: the schema as the one tool the model must call, parsed from the call.
    A model without tool calling gets None (and a warning): the caller constrains the output to
    the schema instead (the same parsed result), as langchain-openai overrides a method a model
    cannot use."""
    name = convert_to_openai_tool(schema)["function"]["name"]
    try:
        llm = model.bind_tools([schema], tool_choice=name, ls_structured_output_format=trace, **kwargs)
    except NotImplementedError:
        warnings.warn(
            "ChatStars has no tool calling here, so method='function_calling' is served as "
            "method='json_schema': the output is constrained to the schema token by token (same parsed result)",
            UserWarning,
            stacklevel=4,
        )
        return None
    if pydantic_class:
        return llm, PydanticToolsParser(tools=[schema], first_tool_only=True)
    return llm, JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
