"""`StarsLLM.structured_predict`, `as_structured_llm` and the streamed variants on the embedded policy:
the answer is held to the output class's JSON Schema token by token and comes back as its instance."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.stars import StarsLLM, StructuredOutputError
from pydantic import BaseModel, Field


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(max_length=24)
    country: str = Field(max_length=24)


PROMPT = PromptTemplate("Give the city {place} and its country as JSON.")


@pytest.fixture(scope="module")
def llm(runtime) -> StarsLLM:
    return StarsLLM(runtime=runtime, max_new_tokens=64, horizon=16, max_rejections=1, seed=3)


def test_structured_predict_returns_the_instance(llm):
    for seed in range(3):
        city = llm.structured_predict(City, PROMPT, llm_kwargs={"seed": seed}, place="Paris")
        assert isinstance(city, City) and len(city.name) <= 24 and len(city.country) <= 24


def test_async_and_streamed_structured_predict(llm):
    city = asyncio.run(llm.astructured_predict(City, PROMPT, place="Rome"))
    assert isinstance(city, City)
    partials = list(llm.stream_structured_predict(City, PROMPT, place="Rome"))
    assert partials and isinstance(partials[-1], City) and partials[-1] == city  # same seed, same answer


def test_as_structured_llm_answers_with_the_object(llm):
    structured = llm.as_structured_llm(City)
    answer = structured.chat([ChatMessage(role=MessageRole.USER, content="Berlin and its country as JSON.")])
    assert isinstance(answer.raw, City) and City.model_validate_json(answer.message.content) == answer.raw


def test_a_budget_too_small_for_the_object_is_an_error_not_a_repaired_object(llm):
    with pytest.raises(StructuredOutputError, match="raise max_tokens"):
        llm.structured_predict(City, PROMPT, llm_kwargs={"max_tokens": 4}, place="Paris")
