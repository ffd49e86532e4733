"""`RemoteBatch` rounds against a fake llama.cpp server (httpx.MockTransport): exact ids in and out,
one request per sampling row sent together, rollback, row copies, seeds, replicas and faults."""

from __future__ import annotations

import hashlib
import json
import math
import threading

import httpx
import pytest

from stars_plugins.backends.remote.batch import RemotePolicy, _stand_in_logits, row_seed, segment_seed
from stars_plugins.backends.remote.detect import Replica
from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import SegmentRequest, ServerInfo
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.backends.sampling import RowSampling, entropy
from stars_plugins.decoding.rules import entropy_boundary
from stars_plugins.errors import ServingError, ServingUnavailableError

EOS = 2


class FakeTokenizer:
    eos_token_id = EOS
    pad_token_id = None
    chat_template = None

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i == EOS))

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(w) for w in text.split()]}


class FakeLlamaServer:
    """Answers /completion like llama-server: token i is a hash of (prefix, seed, i); 13 becomes EOS."""

    def __init__(self):
        self.bodies: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.down = False
        self.barrier: threading.Barrier | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("Connection refused", request=request)
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append((str(request.url), body))
        if self.barrier is not None:
            self.barrier.wait(timeout=5)  # every request of the round must be in flight at once
        if len(body["prompt"]) > 200:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the available context size, try increasing it",
                    }
                },
            )
        seed = 0 if body["temperature"] == 0 else body["seed"]
        tokens, stop = [], "limit"
        for i in range(body["n_predict"]):
            digest = hashlib.sha256(f"{body['prompt']}|{seed}|{i}".encode()).digest()
            token = 10 + digest[0] % 40
            if token == 13:
                tokens.append(EOS)
                stop = "eos"
                break
            tokens.append(token)
        answer = {"tokens": tokens, "stop_type": stop, "truncated": False, "tokens_predicted": len(tokens)}
        if body.get("n_probs"):  # flat (high entropy) before the 4th token, peaked elsewhere
            answer["completion_probabilities"] = [
                {
                    "id": t,
                    "logprob": -0.01,
                    "top_logprobs": (
                        [{"id": 100 + k, "logprob": math.log(1 / 20)} for k in range(20)]
                        if i == 3
                        else [{"id": t, "logprob": math.log(0.99)}, {"id": 99, "logprob": math.log(0.01)}]
                    ),
                }
                for i, t in enumerate(tokens)
            ]
        return httpx.Response(200, json=answer)

    def prompts(self) -> list[list[int]]:
        return [body["prompt"] for _, body in self.bodies]


def make_policy(server: FakeLlamaServer, urls=("http://engine:8080",), retries=0) -> RemotePolicy:
    transport = HttpTransport(
        client=httpx.Client(transport=httpx.MockTransport(server)), retries=retries, sleep=lambda s: None
    )
    replicas = [Replica(url, LlamaCppProtocol(), ServerInfo("m.gguf", 256)) for url in urls]
    return RemotePolicy(
        replicas,
        transport,
        FakeTokenizer(),
        name="llama.cpp:m.gguf",
        eos_token_ids=(EOS,),
        pad_token_id=EOS,
        context_window=256,
        max_concurrency=8,
    )


def rows(n, seed=7, temperature=1.0):
    return [
        RowSampling(temperature, 0, 1.0, seed=seed, stream=i)
        if _has_seed_fields()
        else RowSampling(temperature, 0, 1.0, _generator(seed))
        for i in range(n)
    ]


def _has_seed_fields() -> bool:
    return "seed" in RowSampling.__dataclass_fields__


def _generator(seed):
    import torch

    return torch.Generator().manual_seed(seed)


def test_a_round_sends_every_sampling_row_together_with_its_exact_prefix():
    server = FakeLlamaServer()
    server.barrier = threading.Barrier(3)
    policy = make_policy(server)
    batch = policy.open_batch([[1, 20, 21], [1, 30], [1, 40]], [2, 1, 2], rows(5))
    out = batch.run_round([4, 4, 3, 0, 2], forced={4: [44, 45]})  # row 3 has no budget, row 4 replays
    assert sorted(map(tuple, server.prompts())) == [(1, 20, 21), (1, 20, 21), (1, 30)]
    assert sorted(b["n_predict"] for _, b in server.bodies) == [3, 4, 4]
    assert out.segment(4) == [44, 45] and out.segment(3) == []
    assert batch.rows[0].prefix == [1, 20, 21, *out.segment(0)] and batch.rows[4].prefix == [1, 40, 44, 45]
    assert out.tokens.shape[0] == 5 and bool(out.hit_eos[4]) is False
    policy.close()


def test_eos_is_the_last_token_and_reported():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5]], [64], rows(64))
    out = batch.run_round([16] * 64)
    ended = [r for r in range(64) if bool(out.hit_eos[r])]
    assert ended, "some of 64 rows of 16 tokens should meet the fake EOS"
    for r in ended:
        assert out.segment(r)[-1] == EOS and EOS not in out.segment(r)[:-1]
    policy.close()


def test_siblings_draw_different_seeds_and_a_rejection_resends_the_prefix_with_a_new_one():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5]], [3], rows(3))
    out = batch.run_round([4, 4, 4])
    first = [b["seed"] for _, b in server.bodies]
    assert len(set(first)) == 3
    batch.rollback([0, 1, 2], out)
    assert [row.prefix for row in batch.rows] == [[1, 5]] * 3
    server.bodies.clear()
    batch.run_round([4, 4, 4])
    assert server.prompts() == [[1, 5]] * 3  # the same prefix ...
    assert not set(b["seed"] for _, b in server.bodies) & set(first)  # ... a new attempt
    policy.close()


def test_a_requests_seeds_do_not_depend_on_what_shares_its_round():
    alone_server, shared_server = FakeLlamaServer(), FakeLlamaServer()
    alone = make_policy(alone_server).open_batch([[1, 5]], [2], rows(2, seed=9))
    shared = make_policy(shared_server).open_batch([[1, 77, 78], [1, 5]], [3, 2], rows(3, seed=4) + rows(2, seed=9))
    a, s = alone.run_round([6, 6]), shared.run_round([6] * 5)
    assert [a.segment(0), a.segment(1)] == [s.segment(3), s.segment(4)]


def test_copies_of_an_accepted_row_sample_differently_next_round():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5]], [3], rows(3))
    out = batch.run_round([4, 4, 4])
    batch.select_rows([1, 1, 1])  # candidate 1 won: its prefix goes to all three rows
    assert [row.prefix for row in batch.rows] == [[1, 5, *out.segment(1)]] * 3
    server.bodies.clear()
    nxt = batch.run_round([4, 4, 4])
    assert len({b["seed"] for _, b in server.bodies}) == 3
    assert len({tuple(nxt.segment(r)) for r in range(3)}) > 1
    policy.close()


def test_merge_and_free():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5]], [1], rows(1))
    batch.merge(policy.open_batch([[1, 6], [1, 7]], [1, 1], rows(2)))
    assert batch.num_rows == 3 and batch.mergeable() and batch.rows[2].prefix == [1, 7]
    batch.free()
    assert batch.num_rows == 0


def test_a_failed_round_loses_no_accepted_prefix_and_the_next_round_works():
    server = FakeLlamaServer()
    policy = make_policy(server, retries=1)
    batch = policy.open_batch([[1, 5]], [2], rows(2))
    batch.run_round([4, 4])
    before = [list(row.prefix) for row in batch.rows]
    server.down = True
    out = batch.run_round([4, 4])
    assert sorted(out.errors) == [0, 1] and out.lengths.tolist() == [0, 0]
    for error in out.errors.values():
        assert isinstance(error, ServingUnavailableError) and "http://engine:8080" in str(error)
    assert [row.prefix for row in batch.rows] == before
    server.down = False
    batch.run_round([4, 4])
    for row, old in zip(batch.rows, before, strict=True):
        assert row.prefix[: len(old)] == old and len(row.prefix) > len(old)


def test_a_4xx_belongs_to_its_own_row_and_carries_the_servers_message():
    policy = make_policy(FakeLlamaServer())
    batch = policy.open_batch([list(range(1, 300)), [1, 5]], [1, 1], rows(2))
    out = batch.run_round([4, 4])
    [(row, error)] = out.errors.items()
    assert row == 0 and isinstance(error, ServingError) and error.status == 400
    assert "HTTP 400: the request exceeds the available context size" in str(error)
    assert int(out.lengths[1]) > 0 and batch.rows[1].prefix == [1, 5, *out.segment(1)]
    with pytest.raises(ServingError, match="1 of 2 segment requests to llama.cpp failed") as info:
        policy.generate([_request(tuple(range(1, 300))), _request((1, 5))], [0, 0])
    assert info.value.status == 400


def test_a_request_the_engine_refuses_fails_alone_and_its_batch_neighbours_finish():
    from stars_plugins import StarsRuntime
    from stars_plugins.rewards.base import CallableReward

    runtime = StarsRuntime(make_policy(FakeLlamaServer()), CallableReward(lambda p, r: [1.0] * len(r)))
    refused = " ".join(["5"] * 220)  # fits the client's window of 256, not the fake server's 200
    results = runtime.generate(["1 5", refused, "1 6"], horizon=4, max_new_tokens=8, seed=1, raise_errors=False)
    assert [r.finish_reason for r in results] == ["length", "error", "length"]
    assert isinstance(results[1].error, ServingError) and results[1].error.status == 400
    assert all(len(r.token_ids) == 8 for r in (results[0], results[2]))


def _request(prompt) -> SegmentRequest:
    return SegmentRequest(prompt=prompt, max_tokens=4, temperature=1.0, top_k=0, top_p=1.0, seed=1)


def test_entropy_boundaries_cut_segments_from_the_returned_top_logprobs():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5]], [8], rows(8))
    rule = entropy_boundary(threshold=2.0, shortest=1)
    out = batch.run_round([8] * 8, boundary=rule)
    assert all(b["n_probs"] == 20 and "completion_probabilities" in b["response_fields"] for _, b in server.bodies)
    for r in range(8):  # the segment ends before the high-entropy 4th token (or earlier at EOS)
        assert int(out.lengths[r]) == 3 or bool(out.hit_eos[r])
        assert batch.rows[r].prefix == [1, 5, *out.segment(r)]


def test_stand_in_logits_give_the_entropy_of_the_known_mass_and_a_lower_bound_otherwise():
    flat = {k: math.log(1 / 20) for k in range(20)}
    assert float(entropy(_stand_in_logits([flat]))[0]) == pytest.approx(math.log(20), abs=1e-4)
    peaked = {1: math.log(0.5), 2: math.log(0.1)}  # 0.4 of the mass unseen, no token above 0.1
    estimate = float(entropy(_stand_in_logits([peaked]))[0])
    seen = -(0.5 * math.log(0.5) + 0.1 * math.log(0.1))
    assert estimate == pytest.approx(seen - 0.4 * math.log(0.1), abs=1e-4)


def test_an_engine_that_returns_no_top_logprobs_fails_the_cards_round_clearly():
    server = FakeLlamaServer()
    policy = make_policy(server)
    request = SegmentRequest(prompt=(1, 5), max_tokens=4, temperature=1.0, top_k=0, top_p=1.0, seed=1, top_logprobs=20)
    body = {"tokens": [11, 12], "stop_type": "limit", "truncated": False}
    with pytest.raises(ServingError, match="top 20 logprobs.*strategy='cards'"):
        policy.replicas[0].protocol.parse_response(body, request)


def test_prompts_spread_over_replicas_and_each_keeps_its_replica():
    server = FakeLlamaServer()
    policy = make_policy(server, urls=("http://a:1", "http://b:2"))
    batch = policy.open_batch([[1, 5], [1, 6], [1, 7], [1, 8]], [2, 2, 2, 2], rows(8))
    batch.run_round([3] * 8)
    by_prompt: dict[int, set[str]] = {}
    for url, body in server.bodies:
        by_prompt.setdefault(body["prompt"][1], set()).add(url.split("/completion")[0])
    assert all(len(urls) == 1 for urls in by_prompt.values())
    assert set().union(*by_prompt.values()) == {"http://a:1", "http://b:2"}


def test_seed_helpers():
    # Pinned values: a seeded request must draw the same segments in every process and release, so a
    # change to the derivation (hash, field order, mask) has to show up here.
    pinned = {
        (1, 0, 0, 10, 0): 17480039,
        (1, 0, 0, 10, 1): 1258829598,
        (2, 0, 0, 10, 0): 935125240,
        (1, 1, 0, 10, 0): 1834403668,  # stream 1, salt 0 ...
        (1, 0, 1, 10, 0): 280679301,  # ... differs from stream 0, salt 1
        (1, 0, 0, 11, 0): 1863601850,
        (0, 0, 0, 0, 0): 598732073,
    }
    assert {args: segment_seed(*args) for args in pinned} == pinned
    assert segment_seed(2**40, 3, 4, 5, 6) == 112546050
    assert len({segment_seed(1, 0, 0, 10, a) for a in range(50)}) == 50
    assert 0 <= segment_seed(2**40, 3, 4, 5, 6) < 2**31
    assert row_seed(rows(1, seed=123)[0])[0] == 123


def test_per_row_clocks_send_each_rows_next_segment_when_its_own_came_back():
    server = FakeLlamaServer()
    policy = make_policy(server)
    batch = policy.open_batch([[1, 5], [1, 6]], [1, 1], rows(2))
    batch.begin([0, 1], [3, 6])
    got: dict[int, list[int]] = {0: [], 1: []}
    while len(got[0]) < 6 or not got[1]:
        for done in batch.advance(1):
            got[done.row] += done.tokens
            if done.row == 0 and len(got[0]) < 6:
                batch.begin([0], [3])  # row 0's next segment goes out on its own
    assert len(server.bodies) == 3  # row 0 sent three segments while row 1's one was out
    assert batch.rows[0].prefix == [1, 5, *got[0]] and batch.rows[1].prefix == [1, 6, *got[1]]
    batch.begin([1], [2])
    [done] = batch.advance(1)
    batch.rollback([1])
    assert batch.rows[1].prefix == [1, 6, *got[1]]
    policy.close()


def test_mixed_horizons_on_a_serving_engine_give_each_caller_its_lone_result():
    from stars_plugins import StarsConfig, StarsRuntime
    from stars_plugins.rewards.base import CallableReward

    runtime = StarsRuntime(make_policy(FakeLlamaServer()), CallableReward(lambda p, r: [len(x) % 3 for x in r]))
    runtime.scheduler.configure(max_wait=0.05)
    calls = [
        ("1 5", StarsConfig(horizon=3, max_new_tokens=9, seed=1, target_reward=1.0, acceptance="hard")),
        ("1 6", StarsConfig(horizon=5, max_new_tokens=10, seed=2, target_reward=1.0, acceptance="hard")),
    ]
    alone = [runtime.generate([p], c)[0].token_ids for p, c in calls]
    results: list = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, runtime.generate([calls[i][0]], calls[i][1])[0]))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r.token_ids for r in results] == alone
    assert [len(s.token_ids) for s in results[0].segments] == [3, 3, 3]
