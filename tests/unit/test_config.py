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


def test_an_unknown_strategy_is_an_unknown_strategy_error_from_the_config_itself():
    from stars_plugins.errors import UnknownStrategyError

    with pytest.raises(UnknownStrategyError, match="unknown strategy 'beam'"):
        StarsConfig(horizon=8, strategy="beam")
    with pytest.raises(ConfigError) as info:  # other mistakes beside it: a plain ConfigError naming both
        StarsConfig(horizon=0, strategy="beam")
    assert not isinstance(info.value, UnknownStrategyError) and "horizon" in str(info.value)


def test_settings_the_strategy_ignores_warn_once_per_process(recwarn):
    from stars_plugins import config as config_module

    config_module._warned.clear()
    StarsConfig(strategy="stars", entropy_threshold=2.5)  # a CARDS setting under STARS
    StarsConfig(strategy="stars", entropy_threshold=2.0)
    StarsConfig(strategy="cards", entropy_threshold=2.0, horizon=8)  # the horizon under CARDS
    StarsConfig(strategy="vanilla", num_candidates=4, alpha=0.9)
    StarsConfig(strategy="stars", horizon=8, num_candidates=4, alpha=0.9)  # all read by STARS: no warning
    messages = [str(w.message) for w in recwarn.list if issubclass(w.category, UserWarning)]
    assert messages == [
        "strategy 'stars' does not use entropy_threshold; those settings have no effect with it",
        "strategy 'cards' does not use horizon; those settings have no effect with it",
        "strategy 'vanilla' does not use alpha, num_candidates; those settings have no effect with it",
    ]
    assert all(w.filename == __file__ for w in recwarn.list)  # the warning points at the caller


def test_greedy_decoding_under_a_strategy_that_resamples_warns_once(recwarn):
    from stars_plugins import config as config_module

    config_module._warned.clear()
    StarsConfig(strategy="vanilla", temperature=0.0)  # plain greedy: nothing to say
    StarsConfig(strategy="best_of_n", temperature=0.0, num_candidates=1)  # one sample: nothing either
    StarsConfig(strategy="stars", temperature=0.0)
    StarsConfig(strategy="stars", temperature=0.0, seed=3)
    StarsConfig(strategy="best_of_n", temperature=0.0, num_candidates=4)
    messages = [str(w.message) for w in recwarn.list]
    assert len(messages) == 2 and all("temperature=0 decodes greedily" in m for m in messages)
    assert "'stars'" in messages[0] and "'best_of_n'" in messages[1]


def test_for_strategy_resets_what_the_new_strategy_ignores(recwarn):
    from stars_plugins import config as config_module

    config_module._warned.clear()
    shared = StarsConfig(horizon=8, num_candidates=4, alpha=0.9, max_new_tokens=32, seed=1)
    vanilla = shared.for_strategy("vanilla")
    assert (vanilla.strategy, vanilla.horizon, vanilla.num_candidates, vanilla.alpha) == ("vanilla", 8, 1, 0.5)
    assert (vanilla.max_new_tokens, vanilla.seed) == (32, 1)  # settings every strategy reads are kept
    best = shared.for_strategy("best_of_n", max_new_tokens=16)
    assert (best.num_candidates, best.alpha, best.max_new_tokens) == (4, 0.5, 16)
    assert not [w for w in recwarn.list if issubclass(w.category, UserWarning)]
