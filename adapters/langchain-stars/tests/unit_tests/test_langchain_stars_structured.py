"""`ChatStars.with_structured_output` without a model: what gets bound (the constraint, LangChain's
tracing format), schema conversion, errors before any model work, and the parser's refusal of an
answer whose budget ended inside the JSON."""

from __future__ import annotations

import warnings
from typing import Annotated, TypedDict

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_stars import ChatStars
from langchain_stars.structured import json_schema_of, output_parser
from pydantic import BaseModel, Field

from stars_plugins import ConstraintError


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


class JokeDict(TypedDict):
    """Joke to tell user."""

    setup: Annotated[str, ..., "question to set up a joke"]
    punchline: Annotated[str, ..., "answer to resolve the joke"]


def bound(runnable):
    """The keyword arguments the chat model is bound with (first step of the chain)."""
    first = runnable.first if hasattr(runnable, "first") else runnable
    return first.kwargs


def test_json_schema_is_the_default_method_and_binds_the_constraint() -> None:
    kwargs = bound(ChatStars().with_structured_output(Joke))
    constraint = kwargs["constraint"]
    assert constraint.kind == "json_schema" and constraint.schema == Joke.model_json_schema() and constraint.strict
    trace = {"kwargs": {"method": "json_schema", "strict": None}, "schema": Joke}
    assert kwargs["ls_structured_output_format"] == trace
    loose = bound(ChatStars().with_structured_output(Joke, strict=False))["constraint"]
    assert loose.strict is False


def test_call_settings_ride_along_and_json_mode_needs_no_schema() -> None:
    kwargs = bound(ChatStars().with_structured_output(Joke, max_tokens=96, horizon=8))
    assert (kwargs["max_tokens"], kwargs["horizon"]) == (96, 8)
    assert bound(ChatStars().with_structured_output(None, method="json_mode"))["constraint"].kind == "json_object"


def test_schema_forms() -> None:
    typed = json_schema_of(JokeDict)
    assert set(typed["properties"]) == {"setup", "punchline"} and typed["required"] == ["setup", "punchline"]
    raw = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert json_schema_of(raw) == raw  # a JSON Schema is used as it is
    assert json_schema_of({"name": "x", "schema": raw, "strict": True}) == raw
    assert json_schema_of({"type": "json_schema", "json_schema": {"name": "x", "schema": raw}}) == raw
    tool = convert_to_openai_tool(Joke)
    assert set(json_schema_of(tool)["properties"]) == {"setup", "punchline"}


def test_errors_come_before_any_model_work() -> None:
    chat = ChatStars()
    with pytest.raises(ValueError, match="unknown method"):
        chat.with_structured_output(Joke, method="xml")
    with pytest.raises(ValueError, match="needs a schema"):
        chat.with_structured_output(None)
    with pytest.raises(ConstraintError, match="uniqueItems"):
        chat.with_structured_output({"type": "array", "uniqueItems": True})
    assert chat._slot.loaded is None  # nothing was loaded


def test_function_calling_without_tools_is_served_as_json_schema_with_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runnable = ChatStars().with_structured_output(Joke, method="function_calling", strict=True)
    if "constraint" in bound(runnable):  # no tool calling in this ChatStars: the documented fallback
        assert any("function_calling" in str(w.message) for w in caught)
        assert bound(runnable)["constraint"].schema == Joke.model_json_schema()


def test_the_parser_refuses_an_answer_cut_by_its_budget() -> None:
    cut = AIMessage('{"setup": "Why', response_metadata={"finish_reason": "constraint_incomplete"})
    for schema in (Joke, JokeDict):
        with pytest.raises(OutputParserException, match="raise max_tokens"):
            output_parser(schema).invoke(cut)
    whole = AIMessage('{"setup": "a", "punchline": "b"}', response_metadata={"finish_reason": "eos"})
    assert output_parser(Joke).invoke(whole) == Joke(setup="a", punchline="b")
    assert output_parser(JokeDict).invoke(whole) == {"setup": "a", "punchline": "b"}
