"""How a required call's name is judged (decoding/actions.py): a name cut by the segment end is
completed when one bound tool fits, and the actions no candidate wrote are offered."""

from __future__ import annotations

from stars_plugins.decoding.actions import CallStart

START = CallStart(("delete_files", "delete_folder", "reply_to_user"), '{"name": ')


def test_a_cut_name_is_judged_whole_only_when_one_tool_fits():
    assert START.judged_text('{"name": "reply') == '{"name": "reply_to_user"'
    assert START.judged_text('{"name": "delete_fi') == '{"name": "delete_files"'
    assert START.judged_text('{"name": "delete_') == '{"name": "delete_'  # two tools fit: as written
    assert START.judged_text('{"name": "') == '{"name": "'
    assert START.judged_text('{"name": "nope') == '{"name": "nope'  # no tool fits
    whole = '{"name": "reply_to_user", "arguments": {"message": "no"}}'
    assert START.judged_text(whole) == whole
    assert START.judged_text('  {"name":"rep') == '  {"name":"reply_to_user"'
    assert CallStart(("a", "b"), '[{"name": ').judged_text('[{"name": "b') == '[{"name": "b"'


def test_the_other_actions_are_those_no_candidate_named():
    written = ['{"name": "delete_files", "argu', '{"name": "delete_fi']
    assert START.alternatives(written) == ['{"name": "delete_folder"', '{"name": "reply_to_user"']
    assert START.alternatives(['{"name": "reply']) == ['{"name": "delete_files"', '{"name": "delete_folder"']
    assert len(START.alternatives(['{"name": "delete_'])) == 3  # a cut name that fits two names none
    assert START.alternatives([]) == [f'{{"name": "{n}"' for n in START.names]


def test_every_tool_bench_strategy_gets_its_own_settings():
    from stars_plugins import StarsConfig
    from stars_plugins.benchmarks.tools import TOOL_STRATEGIES, strategy_config

    base = StarsConfig(num_candidates=2, max_rejections=2)
    for settings in TOOL_STRATEGIES.values():
        config = strategy_config(base, settings)
        assert config.strategy == settings["strategy"]
        assert config.offer_other_tools is settings.get("offer_other_tools", False)
    assert any(s.get("offer_other_tools") for s in TOOL_STRATEGIES.values())
