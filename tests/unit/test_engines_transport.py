"""HTTP transport and engine detection against mocked servers (httpx.MockTransport, no network)."""

from __future__ import annotations

import json

import httpx
import pytest

from stars_plugins.backends.remote.detect import connect, engine_name, server_root
from stars_plugins.backends.remote.transport import API_KEY_ENV, HttpTransport
from stars_plugins.errors import ConfigError, ServingError, ServingUnavailableError
from stars_plugins.model_source import is_server_url as is_remote


def transport_for(handler, **kwargs) -> tuple[HttpTransport, list[float]]:
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HttpTransport(client=client, sleep=sleeps.append, **kwargs), sleeps


def test_503_and_connection_reset_are_retried_with_doubling_backoff():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, json={"error": {"message": "Loading model", "code": 503}})
        if len(calls) == 2:
            raise httpx.ReadError("Connection reset by peer", request=request)
        return httpx.Response(200, json={"tokens": [1]})

    transport, sleeps = transport_for(handler, backoff=0.5)
    assert transport.post_json("http://engine/completion", {"prompt": [1]}) == {"tokens": [1]}
    assert len(calls) == 3 and sleeps == [0.5, 1.0]
    assert all(json.loads(c.content) == {"prompt": [1]} for c in calls)  # the same request, resent


def test_4xx_fails_at_once_with_the_servers_message():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "type": "invalid_request_error",
                    "message": "the request exceeds the available context size",
                }
            },
        )

    transport, _ = transport_for(handler)
    with pytest.raises(ServingError, match="HTTP 400: the request exceeds the available context size") as info:
        transport.post_json("http://engine/completion", {})
    assert len(calls) == 1 and info.value.status == 400 and not isinstance(info.value, ServingUnavailableError)


def test_fastapi_detail_messages_are_read_too():
    transport, _ = transport_for(lambda request: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(ServingError, match="HTTP 404: Not Found"):
        transport.get_json("http://engine/generate")


def test_giving_up_names_the_url_and_the_last_failure():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    transport, sleeps = transport_for(handler, retries=2, backoff=0.1)
    with pytest.raises(ServingUnavailableError, match=r"http://engine:9/completion failed 3 time\(s\).*refused"):
        transport.post_json("http://engine:9/completion", {})
    assert sleeps == [0.1, 0.2]


def test_a_read_timeout_fails_the_request_with_a_clear_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    transport, sleeps = transport_for(handler, timeout=2.0)
    with pytest.raises(ServingUnavailableError, match="timed out after 2 s"):
        transport.post_json("http://engine/completion", {})
    assert sleeps == []  # the server may still be working on it: not resent


def test_api_key_goes_in_the_header_only(monkeypatch):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": {"message": "invalid api key"}})

    transport, _ = transport_for(handler, api_key="sk-very-secret")
    with pytest.raises(ServingError) as info:
        transport.get_json("http://engine/v1/models")
    assert seen == ["Bearer sk-very-secret"]
    assert "sk-very-secret" not in str(info.value) and "sk-very-secret" not in repr(transport)

    monkeypatch.setenv(API_KEY_ENV, "sk-from-env")
    from_env, _ = transport_for(handler)
    with pytest.raises(ServingError):
        from_env.get_json("http://engine/v1/models")
    assert seen[-1] == "Bearer sk-from-env"


# ---------------------------------------------------------------- detection
MODELS = {
    "vllm": {"object": "list", "data": [{"id": "Qwen/Qwen2.5-7B-Instruct", "owned_by": "vllm", "max_model_len": 8192}]},
    "sglang": {
        "object": "list",
        "data": [{"id": "Qwen/Qwen2.5-7B-Instruct", "owned_by": "sglang", "max_model_len": 8192}],
    },
    "llama.cpp": {"object": "list", "data": [{"id": "m.gguf", "owned_by": "llamacpp", "meta": {"n_ctx": 4096}}]},
}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "llama.cpp"])
def test_engine_is_detected_from_owned_by(engine):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS[engine])
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "0.11.0"})
        return httpx.Response(404, json={"detail": "Not Found"})

    transport, _ = transport_for(handler)
    replica = connect("http://gpu-box:8000/v1/", transport)
    assert replica.protocol.name == engine and replica.url == "http://gpu-box:8000"
    assert replica.info.context_window in (8192, 4096)
    assert replica.generate_url == "http://gpu-box:8000" + replica.protocol.generate_path


def test_old_vllm_is_read_through_logprobs():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=MODELS["vllm"])
        return httpx.Response(200, json={"version": "0.8.5"})

    transport, _ = transport_for(handler)
    assert connect("http://gpu-box:8000", transport).protocol.legacy_token_ids is True


def test_servers_without_a_model_list_are_probed():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/get_model_info":
            return httpx.Response(200, json={"model_path": "Qwen/Qwen2.5-7B-Instruct"})
        return httpx.Response(404, json={"detail": "Not Found"})

    transport, _ = transport_for(handler)
    assert connect("http://box:30000", transport).protocol.name == "sglang"


def test_an_unknown_server_asks_for_engine_and_a_given_engine_is_trusted():
    transport, _ = transport_for(lambda request: httpx.Response(404, text="no"))
    with pytest.raises(ServingError, match="pass engine="):
        connect("http://box:1234", transport)
    assert connect("http://box:1234", transport, engine="llamacpp").protocol.name == "llama.cpp"
    with pytest.raises(ConfigError, match="engine='tgi' is not supported"):
        engine_name("tgi")


def test_an_unreachable_server_fails_at_connect_naming_the_url():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    transport, _ = transport_for(handler)
    with pytest.raises(ServingUnavailableError, match=r"cannot reach the policy server at http://127.0.0.1:9/v1"):
        connect("http://127.0.0.1:9/v1", transport)


def test_a_refused_api_key_says_how_to_pass_one():
    transport, _ = transport_for(lambda request: httpx.Response(401, json={"error": {"message": "Unauthorized"}}))
    with pytest.raises(ServingError, match="STARS_ENGINE_API_KEY"):
        connect("http://box:8000", transport)


def test_urls_and_roots():
    assert is_remote("http://a:1") and is_remote(["http://a:1", "https://b:2/v1"])
    assert not is_remote("HuggingFaceTB/SmolLM2-135M-Instruct") and not is_remote(None) and not is_remote([])
    assert server_root("http://a:8000/v1/") == "http://a:8000" and server_root("http://a:8080") == "http://a:8080"


# ---------------------------------------------------------------- remote reward (classification endpoint)
CLASSIFY_RESPONSE = {  # the response format in SGLang's classification docs (vLLM's /classify format)
    "id": "classify-9bf17f2847b046c7b2d5495f4b4f9682",
    "object": "list",
    "created": 1745383213,
    "model": "jason9693/Qwen2.5-1.5B-apeach",
    "data": [
        {"index": 0, "label": "Default", "probs": [0.565970778465271, 0.4340292513370514], "num_classes": 2},
        {"index": 1, "label": "Spoiled", "probs": [0.1, 0.9], "num_classes": 2},
    ],
    "usage": {"prompt_tokens": 10, "total_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": None},
}


def test_remote_reward_scores_every_pair_in_one_call():
    from stars_plugins.rewards import score_checked
    from stars_plugins.rewards.remote import RemoteReward

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json=CLASSIFY_RESPONSE)

    transport, _ = transport_for(handler)
    reward = RemoteReward("http://rm:8001/v1", model="jason9693/Qwen2.5-1.5B-apeach", transport=transport)
    assert score_checked(reward, ["p1", "p2"], ["r1", "r2"]) == pytest.approx([0.4340292513370514, 0.9])
    assert seen == [("/classify", {"input": ["p1\nr1", "p2\nr2"], "model": "jason9693/Qwen2.5-1.5B-apeach"})]
    sglang = RemoteReward("http://rm:30000", engine="sglang", transport=transport, label_index=0)
    assert sglang.score(["p1", "p2"], ["r1", "r2"]) == pytest.approx([0.565970778465271, 0.1])
    assert seen[-1][0] == "/v1/classify"


def test_remote_reward_renders_with_the_reward_models_chat_template_and_checks_the_count():
    from stars_plugins.errors import RewardError
    from stars_plugins.rewards.remote import RemoteReward

    class ChatTokenizer:
        chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"

        def apply_chat_template(self, messages, tokenize=False):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages)

    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"data": [{"index": 0, "probs": [0.7], "num_classes": 1}]})

    transport, _ = transport_for(handler)
    reward = RemoteReward("http://rm:8001", tokenizer=ChatTokenizer(), transport=transport)
    assert reward.score(["hi"], ["hello"]) == [0.7]
    assert bodies[-1] == {"input": ["<user>hi<assistant>hello"]}
    with pytest.raises(RewardError, match="1 classifications for 2 texts"):
        reward.score(["a", "b"], ["c", "d"])
