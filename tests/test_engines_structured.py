"""Structured output on serving engines: each engine's structured-output fields pinned per
constraint kind (llama.cpp `json_schema`/`grammar`, vLLM `structured_outputs` and the older
`guided_*`, SGLang `json_schema`/`regex`/`ebnf`), and the one-round design run end to end against a
fake llama.cpp server with the embedded policy's real tokenizer: the whole answer in one request
under the engine's grammar, ids exact, checked by the client's grammar, judged whole.

Sources of the field names: llama.cpp `tools/server` of llama-cpp-python 0.3.36 (`json_schema`,
`grammar`); vLLM `vllm/sampling_params.py` `StructuredOutputsParams` (json, regex, choice, grammar,
json_object; the `guided_*` request fields were removed in 0.12); SGLang
`python/sglang/srt/sampling/sampling_params.py` (json_schema, regex, ebnf).
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest

pytest.importorskip("xgrammar")

from stars_plugins import Constraint, ConstraintError, StarsConfig, StarsRuntime
from stars_plugins.backends.remote.batch import RemotePolicy
from stars_plugins.backends.remote.detect import Replica
from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import SegmentRequest, ServerInfo
from stars_plugins.backends.remote.sglang import SGLangProtocol
from stars_plugins.backends.remote.structured import EngineConstraintError
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.backends.remote.vllm import VLLMProtocol
from stars_plugins.errors import ConfigError, ServingError
from stars_plugins.rewards import load_reward

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}},
        "meta": {"const": {"properties": {"x": 1}}},
    },
    "required": ["name"],
}
CLOSED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pet": {
            "type": "object",
            "properties": {"kind": {"enum": ["cat", "dog"]}},
            "required": ["kind"],
            "additionalProperties": False,
        },
        "tags": {
            "type": "array",
            "items": {"type": "object", "properties": {"t": {"type": "string"}}, "additionalProperties": False},
        },
        "meta": {"const": {"properties": {"x": 1}}},  # data, left as it is
    },
    "required": ["name"],
    "additionalProperties": False,
}
GRAMMAR = 'root ::= "yes" | "no"'


def request(constraint: Constraint) -> SegmentRequest:
    return SegmentRequest((1, 2), 64, 1.0, 40, 1.0, 7, constraint=constraint)


# ---------------------------------------------------------------- request bodies, pinned
def test_llamacpp_fields():
    body = LlamaCppProtocol().request_body(request(Constraint.json_schema(SCHEMA)), None)
    assert body["json_schema"] == CLOSED and body["n_predict"] == 64 and "grammar" not in body
    loose = LlamaCppProtocol().request_body(request(Constraint.json_schema(SCHEMA, strict=False)), None)
    assert loose["json_schema"] == SCHEMA  # not strict: extra properties stay allowed, as the client's grammar
    assert LlamaCppProtocol().request_body(request(Constraint.json_object()), None)["json_schema"] == {"type": "object"}
    choice = LlamaCppProtocol().request_body(request(Constraint.choice(['say "hi"', "b\\c", "é"])), None)
    assert choice["grammar"] == 'root ::= "say \\"hi\\"" | "b\\\\c" | "\\u00e9"'
    assert LlamaCppProtocol().request_body(request(Constraint.grammar(GRAMMAR, "gbnf")), None)["grammar"] == GRAMMAR
    assert "json_schema" not in LlamaCppProtocol().request_body(SegmentRequest((1,), 4, 1.0, 0, 1.0, 1), None)


def test_llamacpp_refuses_what_its_server_cannot_take():
    for constraint in (Constraint.regex("[a-z]+"), Constraint.grammar("start: /[a-z]+/", "lark")):
        with pytest.raises(EngineConstraintError, match="llama.cpp cannot carry") as info:
            LlamaCppProtocol().request_body(request(constraint), None)
        assert isinstance(info.value, ConstraintError) and "gbnf" in str(info.value)


def test_vllm_structured_outputs_and_the_older_guided_fields():
    def fields(constraint, legacy=False):
        body = VLLMProtocol(legacy_token_ids=legacy).request_body(request(constraint), "m")
        return {k: v for k, v in body.items() if k == "structured_outputs" or k.startswith("guided_")}

    assert fields(Constraint.json_schema(SCHEMA)) == {"structured_outputs": {"json": CLOSED}}
    assert fields(Constraint.json_object()) == {"structured_outputs": {"json_object": True}}
    assert fields(Constraint.regex("[a-z]+")) == {"structured_outputs": {"regex": "[a-z]+"}}
    assert fields(Constraint.choice(["a", "b"])) == {"structured_outputs": {"choice": ["a", "b"]}}
    assert fields(Constraint.grammar(GRAMMAR)) == {"structured_outputs": {"grammar": GRAMMAR}}
    assert fields(Constraint.json_schema(SCHEMA), legacy=True) == {"guided_json": CLOSED}
    assert fields(Constraint.json_object(), legacy=True) == {"guided_json": {"type": "object"}}
    assert fields(Constraint.regex("[a-z]+"), legacy=True) == {"guided_regex": "[a-z]+"}
    assert fields(Constraint.choice(["a", "b"]), legacy=True) == {"guided_choice": ["a", "b"]}
    assert fields(Constraint.grammar(GRAMMAR), legacy=True) == {"guided_grammar": GRAMMAR}


def test_sglang_sampling_params():
    def params(constraint):
        return SGLangProtocol().request_body(request(constraint), None)["sampling_params"]

    assert json.loads(params(Constraint.json_schema(SCHEMA))["json_schema"]) == CLOSED  # a JSON text
    assert json.loads(params(Constraint.json_object())["json_schema"]) == {"type": "object"}
    assert params(Constraint.regex("[a-z]+"))["regex"] == "[a-z]+"
    assert params(Constraint.choice(["a", "b"]))["ebnf"] == 'root ::= "a" | "b"'
    assert params(Constraint.grammar(GRAMMAR))["ebnf"] == GRAMMAR
    assert params(Constraint.grammar(GRAMMAR))["max_new_tokens"] == 64
    with pytest.raises(EngineConstraintError, match="SGLang cannot carry"):
        params(Constraint.grammar("start: /[a-z]+/", "lark"))


# ---------------------------------------------------------------- the one-round design, end to end
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
NAMES = ["Ann", "Bo", "Cy"]


class FakeStructuredLlama:
    """Answers /completion like llama-server under `json_schema`: the ids of a person JSON whose
    name depends on the seed, then EOS; cut at `n_predict` (stop_type "limit") like the server."""

    def __init__(self, tokenizer, eos: int, text=None):
        self.tokenizer, self.eos, self.text = tokenizer, eos, text
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    def answer_ids(self, body: dict) -> list[int]:
        text = self.text or json.dumps({"name": NAMES[body["seed"] % 3], "age": 3})
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.eos]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append(body)
        ids = self.answer_ids(body)
        cut = ids[: body["n_predict"]]
        stop = "eos" if len(cut) == len(ids) else "limit"
        return httpx.Response(200, json={"tokens": cut, "stop_type": stop, "truncated": False})


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from stars_plugins.models import embedded_policy_file

    path = embedded_policy_file()
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def remote_runtime(server, tokenizer, reward=lambda prompts, responses: [1.0] * len(responses)) -> StarsRuntime:
    transport = HttpTransport(client=httpx.Client(transport=httpx.MockTransport(server)), retries=0)
    policy = RemotePolicy(
        [Replica("http://engine:8080", LlamaCppProtocol(), ServerInfo("m.gguf", 1024))],
        transport,
        tokenizer,
        name="llama.cpp:m.gguf",
        eos_token_ids=(server.eos,),
        pad_token_id=server.eos,
        context_window=1024,
    )
    config = StarsConfig(horizon=4, max_new_tokens=48, target_reward=0.5, seed=11)
    return StarsRuntime(policy, load_reward(reward), config)


PROMPT = "Describe a person as JSON."


@pytest.mark.slow
def test_a_constrained_answer_is_one_engine_request_with_exact_ids(tokenizer):
    server = FakeStructuredLlama(tokenizer, tokenizer.eos_token_id)
    runtime = remote_runtime(server, tokenizer)
    [result] = runtime.generate([PROMPT], constraint=Constraint.json_schema(PERSON))
    [body] = server.bodies  # one round: the whole answer, not K=4 tokens
    assert body["n_predict"] == 48 and body["json_schema"] == {**PERSON, "additionalProperties": False}
    assert body["prompt"] == runtime.render(PROMPT)  # the exact prompt ids
    assert result.token_ids == server.answer_ids(body)[:-1]  # the engine's ids, EOS dropped, never re-tokenised
    assert result.finish_reason == "eos" and json.loads(result.text) == {"name": NAMES[body["seed"] % 3], "age": 3}


@pytest.mark.slow
def test_a_rejection_resamples_the_whole_answer_from_the_same_prompt(tokenizer):
    """Only Cy passes the reward: every try is a whole answer from the prompt with a new seed."""
    server = FakeStructuredLlama(tokenizer, tokenizer.eos_token_id)
    reward = lambda prompts, responses: [1.0 if "Cy" in r else 0.0 for r in responses]  # noqa: E731
    runtime = remote_runtime(server, tokenizer, reward)
    rejected = 0
    for seed in range(4):
        server.bodies.clear()
        [result] = runtime.generate(
            [PROMPT],
            constraint=Constraint.json_schema(PERSON),
            acceptance="hard",
            alpha=1.0,
            target_reward=1.0,
            max_adaptive_candidates=1,  # one candidate per round: every request is one try
            seed=seed,
        )
        assert json.loads(result.text)["name"] == "Cy"
        assert len(server.bodies) == result.stats.rejections + 1
        assert {tuple(b["prompt"]) for b in server.bodies} == {tuple(runtime.render(PROMPT))}
        assert len({b["seed"] for b in server.bodies}) == len(server.bodies)
        assert all(b["n_predict"] == 48 for b in server.bodies)
        rejected += result.stats.rejections
    assert rejected > 0


@pytest.mark.slow
def test_a_budget_that_ends_inside_the_json_is_constraint_incomplete(tokenizer):
    server = FakeStructuredLlama(tokenizer, tokenizer.eos_token_id)
    [result] = remote_runtime(server, tokenizer).generate(
        [PROMPT], constraint=Constraint.json_schema(PERSON), max_new_tokens=5
    )
    assert result.finish_reason == "constraint_incomplete" and len(result.token_ids) == 5


@pytest.mark.slow
def test_engine_ids_outside_the_constraint_fail_the_request_never_pass_as_valid(tokenizer):
    server = FakeStructuredLlama(tokenizer, tokenizer.eos_token_id, text='{"name": "Ann", "age": 3, "extra": 1}')
    with pytest.raises(ServingError, match="outside the constraint"):
        remote_runtime(server, tokenizer).generate([PROMPT], constraint=Constraint.json_schema(PERSON))


@pytest.mark.slow
def test_what_an_engine_cannot_run_is_refused_before_any_request(tokenizer):
    server = FakeStructuredLlama(tokenizer, tokenizer.eos_token_id)
    runtime = remote_runtime(server, tokenizer)
    with pytest.raises(EngineConstraintError, match="regex"):
        runtime.generate([PROMPT], constraint=Constraint.regex("[a-z]+"))
    with pytest.raises(ConfigError, match="entropy boundaries"):
        runtime.generate([PROMPT], strategy="cards", constraint=Constraint.json_object())
    with pytest.raises(ConfigError, match="at most 1024"):
        runtime.generate([PROMPT], constraint=Constraint.json_object(), max_new_tokens=2000)
    assert server.bodies == []
