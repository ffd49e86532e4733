"""StarsConfig: validated, immutable, with errors that name the field and its range."""

from __future__ import annotations

import pytest

from stars_plugins import ConfigError, StarsConfig


def test_defaults_match_the_published_settings():
    c = StarsConfig()
    assert (c.horizon, c.alpha, c.beta, c.top_k, c.max_new_tokens, c.max_rejections) == (16, 0.5, 0.7, 40, 128, 20)
    assert c.strategy == "stars" and c.acceptance == "soft"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("horizon", 0, "horizon=0: Input should be greater than or equal to 1 (allowed: 1 <= horizon <= 1024)"),
        ("num_candidates", 65, "num_candidates"),
        ("alpha", 1.5, "(allowed: 0.0 <= alpha <= 1.0)"),
        ("beta", 0.0, "(allowed: 0.0 < beta <= 100.0)"),
        ("top_p", 0.0, "top_p"),
        ("temperature", -1.0, "temperature"),
        ("max_new_tokens", 0, "max_new_tokens"),
        ("acceptance", "maybe", "acceptance"),
        ("strategy", "beam", "unknown strategy 'beam'; available: stars, vanilla, best_of_n, cards"),
        ("target_reward", float("nan"), "target_reward"),
    ],
)
def test_invalid_values_fail_at_construction_naming_field_and_range(field, value, expected):
    with pytest.raises(ConfigError) as info:
        StarsConfig(**{field: value})
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_setting_is_rejected_with_the_list_of_known_ones():
    with pytest.raises(ConfigError, match="horizn: unknown setting; known settings: strategy, horizon"):
        StarsConfig(horizn=4)


def test_cross_field_check():
    with pytest.raises(ConfigError, match="min_segment_tokens"):
        StarsConfig(min_segment_tokens=10, max_segment_tokens=5)


def test_config_is_immutable_and_updated_validates():
    c = StarsConfig(horizon=8)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen-instance error
        c.horizon = 4  # type: ignore[misc]
    assert c.updated(horizon=4).horizon == 4 and c.horizon == 8
    with pytest.raises(ConfigError, match="horizon"):
        c.updated(horizon=-1)


def test_stop_accepts_a_string_or_a_list_and_rejects_empty_strings():
    assert StarsConfig(stop="\n").stop == ("\n",)
    assert StarsConfig(stop=["a", "b"]).stop == ("a", "b")
    assert StarsConfig(stop=None).stop == ()
    with pytest.raises(ConfigError, match="non-empty"):
        StarsConfig(stop=[""])


def test_an_unknown_strategy_is_refused_by_the_registry_and_the_config_with_the_same_text():
    from stars_plugins.decoding import check_strategy, get_strategy

    expected = (
        "invalid StarsConfig: strategy='beam': unknown strategy 'beam'; available: stars, vanilla, best_of_n, cards"
    )
    for call in (lambda: check_strategy("beam"), lambda: get_strategy("beam"), lambda: StarsConfig(strategy="beam")):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == expected
    assert check_strategy("cards") == "cards"


def test_a_registered_strategy_is_a_valid_config_value():
    from stars_plugins.decoding import _registry, get_strategy, register_strategy

    register_strategy("mine", lambda: get_strategy("vanilla"))
    try:
        assert StarsConfig(strategy="mine").strategy == "mine"
    finally:
        del _registry["mine"]
