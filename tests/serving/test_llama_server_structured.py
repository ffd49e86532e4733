"""Structured output against a live llama.cpp server (`make test-serving`; marker `serving`).

A constrained request is one `/completion` request carrying `json_schema` (or `grammar`), its whole
answer; the ids the server returns are the ids accepted (exact, never re-tokenised), valid under
the client's grammar, and the server's own answer to the same body is the same ids.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from stars_plugins import Constraint, StarsRuntime
from stars_plugins.backends.remote import load_remote_policy
from stars_plugins.models import embedded_policy_file
from stars_plugins.rewards import load_reward

pytestmark = pytest.mark.serving

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
PROMPT = "Invent a person. Answer with JSON: a first name and an age."


def accept_all(prompts, responses):
    return [1.0] * len(responses)


@pytest.fixture(scope="module")
def remote(llama_server):
    policy = load_remote_policy(llama_server.url, tokenizer=str(embedded_policy_file()))
    yield policy
    policy.close()


@pytest.fixture
def sent(remote, monkeypatch) -> list[dict]:
    bodies: list[dict] = []
    post = remote.transport.post_json

    def recording(url, body, **kwargs):
        bodies.append(body)
        return post(url, body, **kwargs)

    monkeypatch.setattr(remote.transport, "post_json", recording)
    return bodies


def test_a_json_schema_answer_is_one_request_valid_and_exactly_the_servers_ids(remote, sent, llama_server):
    runtime = StarsRuntime(remote, reward=load_reward(accept_all))
    for seed in range(3):
        sent.clear()
        [result] = runtime.generate(
            [PROMPT], constraint=Constraint.json_schema(PERSON), horizon=4, max_new_tokens=96, seed=seed
        )
        [body] = sent  # one round: the whole answer (not K=4 tokens) under the server's json_schema
        assert body["n_predict"] == 96 and body["json_schema"]["additionalProperties"] is False
        assert result.finish_reason == "eos", result.text
        jsonschema.validate(json.loads(result.text), PERSON)
        assert remote.decode(result.token_ids) == result.text
        again = httpx.post(llama_server.url + "/completion", json=body, timeout=120).json()["tokens"]
        assert again[: len(result.token_ids)] == result.token_ids  # the server's own ids, unchanged


def test_choice_and_gbnf_grammar_on_the_server(remote, sent):
    runtime = StarsRuntime(remote, reward=load_reward(accept_all))
    [label] = runtime.generate(
        ["Is 'I love it' positive or negative?"], constraint=Constraint.choice(["positive", "negative"]), seed=1
    )
    assert label.text in ("positive", "negative") and "grammar" in sent[-1]
    [digits] = runtime.generate(
        ["Pick a number."], constraint=Constraint.grammar("root ::= [1-9] [0-9]?", "gbnf"), seed=2
    )
    assert digits.text.isdigit() and 1 <= int(digits.text) <= 99


def test_stars_rejections_resample_whole_answers_from_the_prompt(remote, sent):
    """A reward that accepts about one answer in three: every try is a whole answer from the prompt."""

    def one_in_three(prompts, responses):
        return [float(sum(map(ord, r)) % 3 == 0) if r else 0.0 for r in responses]

    runtime = StarsRuntime(remote, reward=load_reward(one_in_three))
    [result] = runtime.generate(
        [PROMPT],
        constraint=Constraint.json_schema(PERSON),
        max_new_tokens=96,
        acceptance="hard",
        alpha=1.0,
        target_reward=1.0,
        max_rejections=20,
        max_adaptive_candidates=1,
        seed=5,
    )
    assert {tuple(b["prompt"]) for b in sent} == {tuple(runtime.render(PROMPT))}
    assert len(sent) == result.stats.rejections + 1 and len({b["seed"] for b in sent}) == len(sent)
    jsonschema.validate(json.loads(result.text), PERSON)


def test_a_regex_is_refused_before_any_request(remote, sent):
    runtime = StarsRuntime(remote, reward=load_reward(accept_all))
    with pytest.raises(Exception, match="GBNF"):
        runtime.generate([PROMPT], constraint=Constraint.regex("[a-z]+"))
    assert sent == []
