"""Structured output on the embedded policy: every strategy under a JSON Schema gives JSON that
parses and validates, for several seeds; rejected segments keep the grammar in step; a seeded
constrained request gives the same tokens next to unconstrained ones; the budget running out
before the JSON is complete is reported as such."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import jsonschema
import pytest

from stars_plugins import Constraint, StarsConfig
from stars_plugins.rewards.base import CallableReward

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 16},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PROMPTS = [
    "Extract the person as JSON: Maria Lopez, 34, lives in Madrid.",
    "Return JSON for: Tom (age 52) from Leeds.",
    "Who is this? 'Aiko, 27 years old, Osaka.' Answer in JSON.",
]


def assert_valid(result):
    assert result.finish_reason in ("eos", "stop"), (result.finish_reason, result.text)
    jsonschema.validate(json.loads(result.text), SCHEMA)


@pytest.mark.parametrize("strategy", ["vanilla", "stars", "best_of_n", "cards"])
async def test_every_strategy_gives_schema_valid_json_for_several_seeds(runtime, strategy):
    settings = {"max_new_tokens": 56, "constraint": Constraint.json_schema(SCHEMA)}
    if strategy != "cards":
        settings["horizon"] = 8
    if strategy in ("stars", "best_of_n"):
        settings["num_candidates"] = 2
    # the two seeds as two concurrent calls: they share the policy's batch
    calls = [runtime.agenerate(PROMPTS, StarsConfig(strategy=strategy, seed=seed, **settings)) for seed in (0, 1)]
    for results in await asyncio.gather(*calls):
        for result in results:
            assert_valid(result)


def test_rejecting_every_segment_keeps_the_json_valid(runtime):
    never = CallableReward(lambda prompts, responses: [-10.0] * len(responses))
    config = StarsConfig(
        horizon=6,
        num_candidates=2,
        max_rejections=2,
        max_new_tokens=56,
        target_reward=0.0,
        acceptance="hard",
        seed=4,
        constraint=Constraint.json_schema(SCHEMA),
    )
    results = runtime.generate(PROMPTS[:2], config, reward=never)
    for result in results:
        assert_valid(result)
        assert result.stats.rejections >= 2 * result.stats.segments  # every segment was rejected, then forced


class SlowReward:
    """A constant reward that keeps rounds long enough for concurrent callers to share one."""

    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, prompts, responses):
        self.sizes.append(len(set(prompts)))
        time.sleep(0.05)
        return [0.5] * len(responses)


def test_a_seeded_constrained_request_is_the_same_next_to_unconstrained_ones(runtime):
    reward = SlowReward()
    fenced = StarsConfig(
        horizon=8, num_candidates=2, max_new_tokens=40, seed=21, constraint=Constraint.json_schema(SCHEMA)
    )
    [alone] = runtime.generate([PROMPTS[0]], fenced, reward=reward)
    calls = [
        (PROMPTS[1], fenced.updated(constraint=None, seed=3)),
        (PROMPTS[0], fenced),
        (PROMPTS[2], fenced.updated(constraint=Constraint.choice(["yes", "no"]), seed=5)),
    ]
    reward.sizes.clear()
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, prompt, config):
        barrier.wait()
        results[i] = runtime.generate([prompt], config, reward=reward)[0]

    threads = [threading.Thread(target=worker, args=(i, *call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert max(reward.sizes) >= 2  # they shared rounds
    assert results[1].token_ids == alone.token_ids and results[1].text == alone.text
    assert results[2].text in ("yes", "no")


def test_the_budget_running_out_mid_json_is_its_own_finish_reason(runtime):
    config = StarsConfig(strategy="vanilla", max_new_tokens=5, seed=0, constraint=Constraint.json_schema(SCHEMA))
    [result] = runtime.generate([PROMPTS[0]], config)
    assert result.finish_reason == "constraint_incomplete"
    assert result.text.startswith('{"name": "')
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.text)
