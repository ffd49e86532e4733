"""`ChatStars.with_structured_output` on the embedded policy, beyond the standard suite: bounded
schemas parse for several seeds, under STARS with rejections; `include_raw` reports a budget cut
as a parsing error instead of raising; `json_mode` gives a JSON object."""

from __future__ import annotations

import jsonschema
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_stars import ChatStars
from pydantic import BaseModel, Field

from stars_plugins import StarsRuntime


class City(BaseModel):
    """A city and its country."""

    name: str = Field(max_length=20)
    country: str = Field(max_length=20)


QUESTION = "Name a large city and its country, as JSON."


def test_stars_with_rejections_gives_valid_objects(runtime: StarsRuntime) -> None:
    chat = ChatStars(max_tokens=64, horizon=8, num_candidates=2, max_rejections=2)
    for seed in (0, 1):
        city = chat.with_structured_output(City, seed=seed).invoke(QUESTION)
        assert isinstance(city, City)
    schema = City.model_json_schema()
    as_dict = chat.with_structured_output(schema, seed=2).invoke(QUESTION)
    jsonschema.validate(as_dict, schema)


def test_include_raw_reports_a_budget_cut_as_a_parsing_error(runtime: StarsRuntime) -> None:
    out = ChatStars(max_tokens=3, horizon=4, max_rejections=0, seed=0).with_structured_output(City, include_raw=True)
    result = out.invoke(QUESTION)
    assert isinstance(result["raw"], AIMessage) and result["parsed"] is None
    assert isinstance(result["parsing_error"], OutputParserException)
    assert result["raw"].response_metadata["finish_reason"] == "constraint_incomplete"


def test_json_mode_gives_a_json_object(runtime: StarsRuntime) -> None:
    chat = ChatStars(max_tokens=48, horizon=16, max_rejections=0, seed=4)
    result = chat.with_structured_output(None, method="json_mode", include_raw=True).invoke(QUESTION)
    if result["raw"].response_metadata["finish_reason"] != "constraint_incomplete":
        assert isinstance(result["parsed"], dict) and result["parsing_error"] is None
