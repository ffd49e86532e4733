"""STARS against a live llama.cpp server (run with `make test-serving`; marker `serving`)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading

import httpx
import pytest

from stars_plugins import StarsRuntime
from stars_plugins.backends.remote import SegmentRequest, load_remote_policy
from stars_plugins.errors import ServingError, ServingUnavailableError
from stars_plugins.models import embedded_policy_file
from stars_plugins.rewards import load_reward

pytestmark = pytest.mark.serving

PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "Give me three tips for sleeping well.",
]
TOKENIZER = str(embedded_policy_file())


def accept_all(prompts, responses):
    return [1.0] * len(responses)


def one_in_three(prompts, responses):
    """Accepts about a third of the texts, the same texts every time."""
    return [float(int(hashlib.md5(r.encode()).hexdigest(), 16) % 3 == 0) if r else 0.0 for r in responses]


@pytest.fixture(scope="module")
def remote(llama_server):
    policy = load_remote_policy(llama_server.url, tokenizer=TOKENIZER)
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def runtime(remote):
    return StarsRuntime(remote, reward=load_reward(accept_all))


def server_greedy(url: str, prompt_ids: list[int], n: int) -> list[int]:
    body = {"prompt": prompt_ids, "n_predict": n, "temperature": 0.0, "return_tokens": True, "cache_prompt": False}
    return httpx.post(url + "/completion", json=body, timeout=120).json()["tokens"]


def test_engine_is_detected_and_the_slot_context_read(remote, llama_server):
    assert remote.engine == "llama.cpp" and remote.urls == [llama_server.url]
    assert remote.context_window == 1024  # -c 16384 over -np 16 slots


def test_ids_returned_are_the_ids_accepted(remote, runtime, llama_server):
    [prepared] = remote.prepare([PROMPTS[0]], runtime.config)
    body = {"prompt": list(prepared.token_ids), "n_predict": 12, "temperature": 0.0, "return_tokens": True}
    answer = httpx.post(llama_server.url + "/completion", json=body, timeout=60).json()
    assert remote.decode(answer["tokens"]) == answer["content"]  # the server's text is the decode of its ids

    [result] = runtime.generate([PROMPTS[0]], horizon=4, max_new_tokens=12, temperature=0.0, target_reward=0.0)
    assert result.token_ids == answer["tokens"][: len(result.token_ids)]
    assert remote.decode(result.token_ids) == result.text


def test_greedy_remote_stars_equals_the_servers_own_greedy_completion(remote, runtime, llama_server):
    prepared = remote.prepare(PROMPTS, runtime.config)
    results = runtime.generate(
        PROMPTS, strategy="stars", horizon=8, num_candidates=1, max_new_tokens=40, temperature=0.0, target_reward=0.0
    )
    for p, result in zip(prepared, results, strict=True):
        reference = server_greedy(llama_server.url, list(p.token_ids), 40)
        assert result.token_ids == reference[: len(result.token_ids)]
        assert len(result.token_ids) == 40 or result.finish_reason == "eos"


def test_vanilla_and_best_of_n_run_remotely(runtime):
    [vanilla] = runtime.generate([PROMPTS[1]], strategy="vanilla", max_new_tokens=16, seed=3)
    [best] = runtime.generate([PROMPTS[1]], strategy="best_of_n", num_candidates=3, max_new_tokens=16, seed=3)
    for result in (vanilla, best):
        assert result.finish_reason in ("eos", "length") and result.text and result.error is None


def test_cards_segments_end_at_entropy_boundaries_from_top_logprobs(runtime, remote):
    [result] = runtime.generate(
        [PROMPTS[0]],
        strategy="cards",
        entropy_threshold=1.5,
        min_segment_tokens=2,
        max_segment_tokens=12,
        max_new_tokens=48,
        temperature=1.0,
        seed=2,
        target_reward=0.0,
    )
    assert result.error is None and remote.decode(result.token_ids) == result.text
    lengths = [len(s.token_ids) for s in result.segments]
    assert all(n <= 12 for n in lengths)
    assert all(n >= 2 for n in lengths[:-1])
    assert any(n < 12 for n in lengths[:-1]), f"no segment ended at a boundary: {lengths}"


def test_rejection_resends_the_same_prefix_and_resamples(remote, monkeypatch):
    sent: list[list[int]] = []
    post = remote.transport.post_json

    def recording(url, body, **kwargs):
        sent.append(list(body["prompt"]))
        return post(url, body, **kwargs)

    monkeypatch.setattr(remote.transport, "post_json", recording)
    runtime = StarsRuntime(remote, reward=load_reward(one_in_three))
    [result] = runtime.generate(
        [PROMPTS[2]],
        horizon=4,
        num_candidates=2,
        max_new_tokens=16,
        temperature=1.0,
        acceptance="hard",
        alpha=1.0,
        target_reward=1.0,
        max_rejections=50,
        seed=11,
    )
    assert result.error is None and result.stats.rejections > 0
    assert remote.decode(result.token_ids) == result.text
    # a rejected round is followed by a round from the very same prefix (both candidates resend it)
    prefixes = [tuple(p) for p in sent]
    assert any(prefixes[i] == prefixes[i + 2] for i in range(0, len(prefixes) - 2, 2))
    for segment in result.segments:  # every accepted segment passed the reward on its own text
        assert segment.forced or segment.reward == 1.0


def test_a_seed_reproduces_the_same_tokens(runtime):
    settings = dict(horizon=8, num_candidates=2, max_new_tokens=24, temperature=1.0, seed=5, target_reward=0.0)
    first = runtime.generate([PROMPTS[0]], **settings)[0]
    again = runtime.generate([PROMPTS[0]], **settings)[0]
    assert first.token_ids == again.token_ids
    other = runtime.generate([PROMPTS[0]], **{**settings, "seed": 6})[0]
    assert other.token_ids != first.token_ids


def test_concurrent_callers_share_rounds_and_get_their_own_answers(runtime):
    settings = dict(horizon=4, max_new_tokens=12, temperature=1.0, target_reward=0.0)
    alone = [runtime.generate([p], seed=i, **settings)[0].token_ids for i, p in enumerate(PROMPTS)]
    together: list[list[int] | None] = [None] * len(PROMPTS)

    def call(i: int) -> None:
        together[i] = runtime.generate([PROMPTS[i]], seed=i, **settings)[0].token_ids

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone


def test_a_wrong_port_fails_before_any_work_naming_the_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ServingUnavailableError, match=f"cannot reach the policy server at {url}"):
        StarsRuntime.from_pretrained(policy=url, policy_tokenizer=TOKENIZER, reward=accept_all)


def test_a_4xx_fails_the_request_with_the_servers_message(remote, runtime):
    request = SegmentRequest(prompt=tuple(range(1, 1100)), max_tokens=4, temperature=0.0, top_k=0, top_p=1.0, seed=0)
    with pytest.raises(ServingError) as info:
        remote.generate([request], [0])
    assert info.value.status == 400 and "context" in str(info.value)


def test_a_server_killed_mid_run_fails_in_flight_requests_and_the_runtime_recovers(server_factory):
    server = server_factory(slots=4)
    policy = load_remote_policy(server.url, tokenizer=TOKENIZER, retries=1)
    runtime = StarsRuntime(policy, reward=load_reward(accept_all))
    stream = runtime.stream(PROMPTS[0], horizon=4, max_new_tokens=400, temperature=1.0, target_reward=0.0)
    first = next(stream)
    assert first.token_ids
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    with pytest.raises(ServingUnavailableError, match=server.url):
        for _ in stream:
            pass
    assert stream.result is not None and stream.result.finish_reason == "error"

    port = server.port
    server.process = None
    restarted = server_factory(port=port, slots=4)
    [result] = runtime.generate([PROMPTS[1]], horizon=4, max_new_tokens=8, temperature=0.0, target_reward=0.0)
    assert result.error is None and len(result.token_ids) > 0
    restarted.stop()
    policy.close()


def test_rows_spread_over_replicas(llama_server, server_factory):
    second = server_factory(slots=4)
    policy = load_remote_policy([llama_server.url, second.url], tokenizer=TOKENIZER)
    seen: list[str] = []
    post = policy.transport.post_json
    lock = threading.Lock()

    def recording(url, body, **kwargs):
        with lock:
            seen.append(url)
        return post(url, body, **kwargs)

    policy.transport.post_json = recording
    runtime = StarsRuntime(policy, reward=load_reward(accept_all))
    results = runtime.generate(PROMPTS, horizon=4, max_new_tokens=8, temperature=0.0, target_reward=0.0)
    assert all(r.error is None for r in results)
    assert {u.rsplit("/", 1)[0] for u in seen} == {llama_server.url, second.url}
    policy.close()


def test_the_engine_batching_script_measures_the_server_alone(llama_server):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "engine_batching.py"
    done = subprocess.run(
        [sys.executable, str(script), llama_server.url, "--requests", "2", "--tokens", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "one at a time:" in done.stdout and "ratio" in done.stdout
