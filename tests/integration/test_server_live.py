"""`stars serve` with the embedded models, driven by real clients over HTTP on 127.0.0.1: the
official `openai` package, langchain-openai's ChatOpenAI and LlamaIndex's OpenAILike."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from stars_plugins.benchmarks.serve_load import free_port, wait_healthy, wait_idle  # noqa: E402

KEY = "test-key-0123456789"
MESSAGES = [{"role": "user", "content": "Give me three tips for staying focused."}]


def start_serve(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "STARS_TEST_KEY": KEY, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stars_plugins.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--api-key-env",
            "STARS_TEST_KEY",
            "--no-access-log",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout=600)
    except Exception:
        process.kill()
        raise
    return process, url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded policy and reward behind `stars serve`, with small budgets and tight limits
    (2 requests at once, 1 waiting) so that 429 is reachable."""
    process, url = start_serve(
        tmp_path_factory.mktemp("serve"),
        "--max-new-tokens",
        "12",
        "--horizon",
        "4",
        "--max-concurrent-requests",
        "2",
        "--max-queued-requests",
        "1",
        "--max-body-bytes",
        "65536",
        "--max-tokens-limit",
        "512",
    )
    yield url
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)


def stars_of(choice) -> dict:
    return choice.model_extra["stars"]


# ---------------------------------------------------------------------------- openai
def test_openai_invoke_with_stats(client):
    response = client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=12, seed=1)
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    stats = stars_of(choice)["stats"]
    assert 1 <= stats["accepted_tokens"] <= 12 and response.usage.completion_tokens == stats["accepted_tokens"]
    assert client.models.list().data[0].id == "stars"


def test_openai_stream_matches_the_whole_response_for_one_seed(client):
    chunks = list(
        client.chat.completions.create(
            model="stars", messages=MESSAGES, max_tokens=12, seed=7, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and "stats" in stars_of(finals[0])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    again = client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=12, seed=7)
    assert again.choices[0].message.content == text  # seed reproducibility across stream and invoke


def test_openai_seed_reproducible_and_n_choices(client):
    first, second = (
        client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=8, seed=3, temperature=1.0, n=2)
        for _ in range(2)
    )
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]


def test_openai_stop_string_cuts_the_text(client):
    # Plain sampling: under STARS the reward sees the text cut at the stop string, so acceptance (and
    # with it the text before the stop) may differ; with vanilla, one seed means the same tokens.
    vanilla = {"stars": {"strategy": "vanilla"}}
    base = client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=12, seed=11, extra_body=vanilla)
    text = base.choices[0].message.content
    words = [w for w in text.split() if len(w) >= 3]
    assert len(words) >= 2, text
    stop = words[1]
    cut = client.chat.completions.create(
        model="stars", messages=MESSAGES, max_tokens=12, seed=11, stop=[stop], extra_body=vanilla
    )
    assert cut.choices[0].message.content == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop" and stars_of(cut.choices[0])["finish_reason"] == "stop"


def test_per_request_stars_settings_via_extra_body(client):
    response = client.chat.completions.create(
        model="stars",
        messages=MESSAGES,
        max_tokens=16,
        seed=2,
        extra_body={"stars": {"horizon": 8, "num_candidates": 2, "reward": "sentiment", "target_reward": 0.0}},
    )
    stars = stars_of(response.choices[0])
    stats = stars["stats"]
    assert stats["segments"] == math.ceil(stats["accepted_tokens"] / 8)  # K = 8, not the server's 4
    assert stats["sampled_tokens"] > stats["accepted_tokens"]  # two candidates per segment
    assert -1.0 <= stars["reward"] <= 1.0  # VADER's scale: the sentiment reward scored it
    vanilla = client.completions.create(
        model="stars", prompt="The capital of France is", max_tokens=6, extra_body={"stars": {"strategy": "vanilla"}}
    )
    assert stars_of(vanilla.choices[0])["strategy"] == "vanilla"


def test_openai_error_statuses(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="stars", messages=MESSAGES, extra_body={"stars": {"horizonn": 4}})
    assert bad.value.body["param"] == "stars.horizonn"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=100_000)
    assert bad.value.body["param"] == "max_tokens"
    intruder = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        intruder.chat.completions.create(model="stars", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError) as big:
        client.chat.completions.create(model="stars", messages=[{"role": "user", "content": "x" * 70_000}])
    assert big.value.status_code == 413


def test_busy_server_answers_429_with_retry_after(client, server):
    """Two requests run, one waits, the fourth is refused at once."""
    long_request = {
        "model": "stars",
        "messages": MESSAGES,
        "max_tokens": 400,
        "stream": True,
        "extra_body": {"stars": {"strategy": "vanilla"}},
    }
    running = [client.chat.completions.create(**long_request) for _ in range(2)]
    for stream in running:
        next(iter(stream))  # headers and the role chunk: both hold a slot
    waiter = threading.Thread(
        target=lambda: client.chat.completions.create(**{**long_request, "max_tokens": 4, "stream": False})
    )
    waiter.start()
    try:
        deadline = time.monotonic() + 60
        while httpx.get(f"{server}/health").json()["queued_requests"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(openai.RateLimitError) as busy:
            client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=4)
        assert int(busy.value.response.headers["Retry-After"]) >= 1
    finally:
        for stream in running:
            stream.close()
        waiter.join(timeout=300)
    wait_idle(server)


def test_client_disconnect_mid_stream_frees_the_request(client, server):
    before = httpx.get(f"{server}/health").json()["requests"].get("disconnected", 0)
    stream = client.chat.completions.create(
        model="stars", messages=MESSAGES, max_tokens=400, stream=True, extra_body={"stars": {"strategy": "vanilla"}}
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()  # hang up mid-stream
    health = wait_idle(server, timeout=120)  # the request left its batch: the scheduler is idle
    assert health["requests"].get("disconnected", 0) == before + 1
    after = client.chat.completions.create(model="stars", messages=MESSAGES, max_tokens=8)
    assert after.choices[0].message.content


def test_client_that_gives_up_on_a_non_streamed_request_cancels_it(server):
    before = httpx.get(f"{server}/health").json()["requests"].get("disconnected", 0)
    body = {"model": "stars", "messages": MESSAGES, "max_tokens": 400, "seed": 0, "stars": {"strategy": "vanilla"}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=2.0)
    health = wait_idle(server, timeout=120)
    assert health["requests"].get("disconnected", 0) == before + 1


# ---------------------------------------------------------------------------- frameworks, unchanged
def test_langchain_chat_openai(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        base_url=f"{server}/v1",
        api_key=KEY,
        model="stars",
        max_tokens=12,
        seed=5,
        max_retries=0,
        extra_body={"stars": {"horizon": 4}},
    )
    message = llm.invoke("Say hello to a new colleague.")
    assert message.content.strip()
    assert message.usage_metadata["output_tokens"] >= 1
    pieces = [chunk.content for chunk in llm.stream("Say hello to a new colleague.")]
    assert len([p for p in pieces if p]) >= 1 and "".join(pieces) == message.content


def test_llama_index_openai_like(server):
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.llms import ChatMessage

    llm = openai_like.OpenAILike(
        api_base=f"{server}/v1",
        api_key=KEY,
        model="stars",
        is_chat_model=True,
        max_tokens=12,
        context_window=8192,
        max_retries=0,
    )
    response = llm.chat([ChatMessage(role="user", content="Name a fruit.")])
    assert response.message.content.strip()
    assert response.raw.choices[0].model_extra["stars"]["stats"]["accepted_tokens"] >= 1  # the raw response
    streamed = list(llm.stream_chat([ChatMessage(role="user", content="Name a fruit.")]))
    assert streamed and streamed[-1].message.content.strip()


# ---------------------------------------------------------------------------- SIGTERM drains
def test_sigterm_drains_in_flight_requests_then_exits(tmp_path):
    process, url = start_serve(tmp_path, "--max-new-tokens", "64", "--horizon", "4", "--graceful-shutdown", "120")
    body = {"model": "stars", "messages": MESSAGES, "max_tokens": 64, "stream": True, "stars": {"strategy": "vanilla"}}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, timeout=300, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        lines = response.iter_lines()
        for line in lines:
            if '"content":"' in line and '"content":""' not in line:
                break
        process.send_signal(signal.SIGTERM)  # mid-stream
        after_signal = [line for line in lines if line]
    assert after_signal[-1] == "data: [DONE]" and len(after_signal) >= 2  # finished after the signal
    assert process.wait(timeout=150) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
