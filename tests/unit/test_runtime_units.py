"""`StarsRuntime` pieces that need no model: scoring input checks and where named rewards load."""

from __future__ import annotations

import pytest

from stars_plugins import RewardError, StarsConfig, StarsError, StarsRuntime
from stars_plugins import runtime as runtime_module
from stars_plugins.rewards.base import CallableReward


class FakePolicy:
    name = "fake"
    device = "meta"


def fake_runtime() -> StarsRuntime:
    return StarsRuntime(FakePolicy(), CallableReward(lambda p, r: [float(len(x)) for x in r], name="length"))  # type: ignore[arg-type]


def test_score_with_lists_of_different_lengths_names_both_lengths():
    rt = fake_runtime()
    with pytest.raises(StarsError, match="2 prompts and 1 responses") as info:
        rt.score(["a", "b"], ["x"])
    assert isinstance(info.value, RewardError)
    assert rt.score(["a", "b"], ["x", "yy"]) == [1.0, 2.0]


def test_score_loads_a_named_reward_on_the_policys_device(monkeypatch):
    calls = []

    def fake_load(spec, *, device=None):
        calls.append((spec, device))
        return CallableReward(lambda p, r: [0.0] * len(r), name=str(spec))

    monkeypatch.setattr(runtime_module, "load_reward", fake_load)
    fake_runtime().score(["a"], ["b"], reward="sentiment")
    assert calls == [("sentiment", "meta")]


def test_resolve_config_refuses_an_unknown_strategy():
    rt = fake_runtime()
    with pytest.raises(StarsError, match="unknown strategy 'beam'"):
        rt.resolve_config(strategy="beam")
    assert rt.resolve_config(StarsConfig(horizon=4), strategy="cards").strategy == "cards"
