"""The one-round design for constrained requests on a serving engine, end to end against a fake
llama.cpp server with the embedded policy's real tokenizer: the whole answer in one request under
the engine's grammar, ids exact, checked by the client's grammar, judged whole; what an engine
cannot run is refused before any request. Field names per engine: tests/unit/test_engines_structured_fields.py.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest

pytest.importorskip("xgrammar")

from stars_plugins import Constraint, StarsConfig, StarsRuntime
from stars_plugins.backends.remote.batch import RemotePolicy
from stars_plugins.backends.remote.detect import Replica
from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import ServerInfo
from stars_plugins.backends.remote.structured import EngineConstraintError
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.errors import ConfigError, ServingError
from stars_plugins.rewards import load_reward

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
        runtime.generate([PROMPT], runtime.config.for_strategy("cards", constraint=Constraint.json_object()))
    with pytest.raises(ConfigError, match="at most 1024"):
        runtime.generate([PROMPT], constraint=Constraint.json_object(), max_new_tokens=2000)
    assert server.bodies == []
