"""llama-index-llms-stars without a model: package layout, settings, construction errors, observability."""

from __future__ import annotations

import llama_index
import llama_index.core
import llama_index.llms
import pytest
from llama_index.core.llms.custom import CustomLLM
from llama_index.llms.stars import CALL_SETTINGS, StarsLLM

from stars_plugins import ConfigError, StarsConfig, UnknownRewardError, available_rewards, calls


def test_public_names_and_namespace_packages() -> None:
    import llama_index.llms.stars as package

    assert sorted(package.__all__) == ["CALL_SETTINGS", "StarsLLM", "StructuredOutputError"]
    assert CALL_SETTINGS is calls.CALL_SETTINGS
    assert issubclass(StarsLLM, CustomLLM) and StarsLLM.class_name() == "StarsLLM"
    # `llama_index` and `llama_index.llms` stay namespace packages (no __init__.py here): one would hide
    # llama-index-core and every other integration installed beside this one.
    assert getattr(llama_index, "__file__", None) is None and getattr(llama_index.llms, "__file__", None) is None
    assert llama_index.core.__file__ is not None


def test_every_runtime_setting_is_a_field() -> None:
    """A setting added to StarsConfig reaches LlamaIndex users without an adapter change."""
    assert set(StarsConfig.model_fields) <= set(StarsLLM.model_fields)
    defaults = StarsConfig()
    assert StarsLLM().config_settings() == {name: getattr(defaults, name) for name in StarsConfig.model_fields}
    assert StarsLLM(max_tokens=5).max_new_tokens == 5  # the alias the core accepts per call, as a field too


def test_invalid_engine_settings_fail_at_construction():
    with pytest.raises(ConfigError) as reference:
        StarsConfig(max_rejections=-1)
    with pytest.raises(ConfigError) as raised:
        StarsLLM(max_rejections=-1)
    assert str(raised.value) == str(reference.value)
    with pytest.raises(ConfigError, match="horizn"):
        StarsLLM(horizn=8)
    with pytest.raises(ConfigError, match="horizon"):
        StarsLLM(horizon="many")
    with pytest.raises(ConfigError, match="strategy"):
        StarsLLM(strategy="beam")


def test_unknown_reward_fails_at_construction_listing_the_available_ones() -> None:
    with pytest.raises(UnknownRewardError) as info:
        StarsLLM(reward="harmles")
    assert "'harmles'" in str(info.value)
    assert all(name in str(info.value) for name in available_rewards())


def test_observability_never_loads_the_model() -> None:
    llm = StarsLLM(max_new_tokens=20, horizon=8)
    payload = llm.to_payload()
    assert payload["model_name"] == calls.policy_label(None) and payload["class_name"] == "StarsLLM"
    assert payload["max_new_tokens"] == 20 and payload["horizon"] == 8
    assert llm._slot.loaded is None
