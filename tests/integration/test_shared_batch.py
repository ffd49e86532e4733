"""One shared batch for every chain (decoding/engine.py): requests of any two strategies, with
different horizons and reward models, run as rows of one batch on their own segment clocks, and a
seeded request's output is the same alone, beside a request of its own configuration, and beside
a request of another strategy, horizon and reward."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from stars_plugins import Constraint, StarsConfig, StarsRuntime
from stars_plugins.backends.hf import batch as batch_module

pytestmark = pytest.mark.slow

STRATEGIES = ("stars", "cards", "best_of_n", "vanilla")
PROMPTS = ["Tell me a story", "Name three colours", "Why is the sky blue?", "Say hi"]


def by_text(prompts, responses):
    return [(sum(map(ord, r)) % 101) / 100 for r in responses]


def by_length(prompts, responses):
    return [(len(r) % 7) / 7 for r in responses]


CONFIGS = {
    "stars": StarsConfig(horizon=4, max_new_tokens=16, max_rejections=3, num_candidates=2),
    "cards": StarsConfig(
        strategy="cards", max_new_tokens=16, max_rejections=3, min_segment_tokens=3, max_segment_tokens=8
    ),
    "best_of_n": StarsConfig(horizon=8, max_new_tokens=12, num_candidates=3),
    "vanilla": StarsConfig(horizon=6, max_new_tokens=14),
}


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs) -> StarsRuntime:
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    rt.scheduler.configure(max_wait=0.05)  # callers released together are admitted together
    return rt


def call(rt, strategy, prompt, seed, reward):
    return rt.generate([prompt], CONFIGS[strategy].updated(seed=seed), strategy=strategy, reward=reward)[0]


def together(rt, calls):
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i):
        barrier.wait()
        results[i] = call(rt, *calls[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def same(got, want):
    assert got.error is None and want.error is None
    assert (got.token_ids, got.text) == (want.token_ids, want.text)
    assert got.reward == pytest.approx(want.reward, rel=1e-6)
    assert got.stats.rejections == want.stats.rejections


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(STRATEGIES, 2)))
def test_a_seeded_request_is_the_same_alone_uniform_and_mixed(tiny, monkeypatch, a, b):
    first = (a, PROMPTS[0], 11, by_text)
    second = (b, PROMPTS[1], 22, by_length)  # another strategy, horizon and reward
    alone = [call(tiny, *first), call(tiny, *second)]
    uniform = together(tiny, [first, (a, PROMPTS[2], 33, by_text)])
    rows_seen: list[int] = []
    original = batch_module.LockstepBatch.advance

    def spy(self, steps):
        rows_seen.append(self.num_rows)
        return original(self, steps)

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", spy)
    mixed = together(tiny, [first, second])
    same(uniform[0], alone[0])
    same(mixed[0], alone[0])
    same(mixed[1], alone[1])
    rows = {s: 1 if s == "vanilla" else CONFIGS[s].num_candidates for s in STRATEGIES}
    assert max(rows_seen) >= rows[a] + rows[b]  # they did decode in one batch
    for result, strategy in ((mixed[0], a), (mixed[1], b)):
        k = CONFIGS[strategy].horizon if strategy == "stars" else CONFIGS[strategy].max_segment_tokens
        assert all(s.rejections == 0 or len(s.token_ids) <= k for s in result.segments)
        assert result.stats.rejected_tokens <= result.stats.rejections * k  # a rejection costs <= K


def test_rows_of_horizons_8_and_16_meet_every_8_steps_in_one_reward_call(tiny):
    seen: list[set[str]] = []
    lock = threading.Lock()

    def recorder(prompts, responses):
        with lock:
            seen.append(set(prompts))
        return [1.0] * len(responses)

    config = StarsConfig(max_new_tokens=32, target_reward=0.0, acceptance="hard", num_candidates=1)
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def run(i, horizon):
        barrier.wait()
        results[i] = tiny.generate([PROMPTS[i]], config.updated(horizon=horizon, seed=i), reward=recorder)[0]

    threads = [threading.Thread(target=run, args=(i, k)) for i, k in enumerate((8, 16))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [len(r.segments) for r in results] == [4, 2]
    both = [s for s in seen if s == {PROMPTS[0], PROMPTS[1]}]
    assert len(both) >= 3  # R(prompt, "") at admission, then steps 16 and 32: one call each
    assert len(seen) <= 6  # steps 8 and 24 score the K=8 request alone


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_a_seeded_constrained_request_is_the_same_alone_and_beside_an_unconstrained_one(tiny, monkeypatch):
    """Structured output in the shared batch: a JSON-Schema STARS request (horizon 4, rejections,
    so grammar rollbacks and copies of the winning row) gives the same tokens alone and beside an
    unconstrained plain-sampling request of horizon 6 and another reward."""
    fenced = CONFIGS["stars"].updated(
        seed=11, max_new_tokens=24, target_reward=0.7, acceptance="hard", constraint=Constraint.json_schema(PERSON)
    )
    plain = CONFIGS["vanilla"].updated(seed=22)
    calls = [("stars", fenced, by_text), ("vanilla", plain, by_length)]

    def run(strategy, config, reward):
        return tiny.generate(
            [PROMPTS[0] if strategy == "stars" else PROMPTS[1]], config, strategy=strategy, reward=reward
        )[0]

    alone = [run(*c) for c in calls]
    rows_seen: list[int] = []
    original = batch_module.LockstepBatch.advance

    def spy(self, steps):
        rows_seen.append(self.num_rows)
        return original(self, steps)

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", spy)
    mixed: list = [None, None]
    barrier = threading.Barrier(2)

    def worker(i):
        barrier.wait()
        mixed[i] = run(*calls[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    same(mixed[0], alone[0])
    same(mixed[1], alone[1])
    assert max(rows_seen) >= CONFIGS["stars"].num_candidates + 1  # they did decode in one batch
    assert alone[0].stats.rejections > 0  # rejected segments rolled the grammar back
    assert alone[0].text.startswith('{"name": "'), alone[0].text  # held to the schema
    if alone[0].finish_reason in ("eos", "stop"):
        assert set(json.loads(alone[0].text)) == {"name", "age"}
    else:
        assert alone[0].finish_reason == "constraint_incomplete"
    assert not alone[1].text.startswith("{")  # the unconstrained neighbour is not fenced
