"""STARS judges a required call's action (decoding/actions.py) on the embedded policy: with
`offer_other_tools`, a reward that pays only for a tool the policy does not name still gets that
tool called, with arguments that fit its schema (without it, the best the policy wrote); a reward
that pays for the policy's own choice keeps it."""

from __future__ import annotations

from stars_plugins.calls import prepare_call
from stars_plugins.rewards.base import CallableReward
from tests.helpers.tools import GET_WEATHER, string_tool

TOOLS = [GET_WEATHER, string_tool("get_time", "Get the local time in a city", "city")]
ASK = "What is the weather in Paris?"
SETTINGS = {"max_new_tokens": 40, "horizon": 8, "seed": 3, "tools": TOOLS, "tool_choice": "required"}
STARS = {"strategy": "stars", "num_candidates": 2, "max_rejections": 2, "target_reward": 0.5, "acceptance": "hard"}
OFFER = {**STARS, "offer_other_tools": True}


def call(runtime, **overrides):
    return prepare_call(runtime, runtime.config.model_dump(), {**SETTINGS, **overrides}, owner="test")


def pays_for(name: str) -> CallableReward:
    """1 for a response that calls `name`, -1 for one that names another tool, 0 before any name."""

    def score(prompts, responses):
        return [1.0 if f'"name": "{name}"' in r else -1.0 if '"name": "' in r else 0.0 for r in responses]

    return CallableReward(score)


def test_the_reward_steers_the_call_to_an_action_the_policy_does_not_propose(runtime):
    (plain,) = call(runtime, strategy="vanilla").generate([ASK])
    (proposed,) = plain.tool_calls
    other = next(t["function"]["name"] for t in TOOLS if t["function"]["name"] != proposed.name)
    samples = call(runtime, strategy="best_of_n", num_candidates=4, reward=pays_for(other)).generate([ASK])
    assert all(c.name == proposed.name for r in samples for c in r.tool_calls)  # the policy's one action

    (unsteered,) = call(runtime, **STARS, reward=pays_for(other)).generate([ASK])
    assert [c.name for c in unsteered.tool_calls] == [proposed.name]  # off: the best the policy wrote
    (steered,) = call(runtime, **OFFER, reward=pays_for(other)).generate([ASK])
    assert steered.finish_reason == "tool_calls", steered.text
    (chosen,) = steered.tool_calls
    assert chosen.name == other and not steered.invalid_tool_calls
    assert set(chosen.arguments) == {"city"}
    assert steered.stats.rejections >= 2  # the policy's own candidates were judged and rejected first


def test_an_action_that_passes_is_the_policys_own(runtime):
    (plain,) = call(runtime, strategy="vanilla").generate([ASK])
    (proposed,) = plain.tool_calls
    (kept,) = call(runtime, **OFFER, reward=pays_for(proposed.name)).generate([ASK])
    assert [c.name for c in kept.tool_calls] == [proposed.name]
    assert kept.stats.forced_accepts == 0
