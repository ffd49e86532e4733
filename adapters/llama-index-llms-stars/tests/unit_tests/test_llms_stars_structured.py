"""`StarsLLM` structured output without a model: the constraint a structured call carries, and the
parse of a finished or cut answer."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.stars import StarsLLM, StructuredOutputError
from llama_index.llms.stars.base import parse_structured
from pydantic import BaseModel, Field


class City(BaseModel):
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)


def response(text: str, finish: str) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw={"finish_reason": finish})


def test_a_structured_call_carries_the_output_class_schema_as_its_constraint() -> None:
    llm = StarsLLM()
    messages, kwargs = llm._structured_input(
        City, PromptTemplate("About {place}."), {"max_tokens": 64}, {"place": "Oslo"}
    )
    assert [m.content for m in messages] == ["About Oslo."]
    assert kwargs["max_tokens"] == 64 and kwargs["constraint"].schema == City.model_json_schema()
    assert llm._slot.loaded is None  # nothing loaded to build it


def test_parse_gives_the_instance_and_refuses_a_cut_answer() -> None:
    assert parse_structured(City, response('{"name": "Oslo", "country": "Norway"}', "eos")) == City(
        name="Oslo", country="Norway"
    )
    with pytest.raises(StructuredOutputError, match="raise max_tokens"):
        parse_structured(City, response('{"name": "Os', "constraint_incomplete"))
