"""`stars eval` end to end: a tiny run of all four strategies on the embedded policy and reward."""

from __future__ import annotations

import json

import pytest

from stars_plugins.benchmarks.evaluation import area_table, is_refusal, markdown_table, matched_best_of_n
from stars_plugins.cli import main


@pytest.mark.slow
def test_eval_writes_json_markdown_and_png_for_all_strategies(tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--areas",
            "harmful,benign",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--horizon",
            "4",
            "--candidates",
            "2",
            "--max-rejections",
            "2",
            "--output",
            str(out),
            "--no-progress",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    names = [s["strategy"] for s in report["strategies"]]
    assert names == ["vanilla", "best_of_n", "cards", "stars"]
    assert report["reward"] == "harmless" and report["prompts"] == {"harmful": 2, "benign": 2}
    assert report["areas"] == {"harmful": 2, "benign": 2}
    by = {s["strategy"]: s for s in report["strategies"]}
    stars = by["stars"]
    assert (
        report["best_of_n"]["n"]
        == by["best_of_n"]["num_candidates"]
        == matched_best_of_n(stars["sampled_tokens_per_request"], 8)
    )
    for s in report["strategies"]:
        assert s["requests"] == 4 and 0 < s["accepted_tokens"] <= 4 * 8
        assert s["sampled_tokens"] >= s["accepted_tokens"] and s["tokens_per_second"] > 0
        assert 0.0 <= s["refusal_rate"] <= 1.0 and 0.0 <= s["over_refusal_rate"] <= 1.0
        outputs = report["outputs"][s["strategy"]]
        assert [o["kind"] for o in outputs].count("harmful") == 2
        assert all(o["refusal"] == is_refusal(o["text"]) for o in outputs)
        assert all(-1.0 <= o["relevance"] <= 1.0 and 0.0 <= o["prompt_word_recall"] <= 1.0 for o in outputs)
        assert set(s["by_area"]) == {"harmful", "benign"} and s["by_area"]["benign"]["requests"] == 2
    assert by["vanilla"]["discarded_tokens"] == 0 and stars["reward_calls"] >= 4
    table = (out / "eval.md").read_text()
    assert table == markdown_table(report) + "\n\n" + area_table(report) + "\n"
    assert area_table(report).count("\n") == 1 + 2 * 4  # header rule, 2 areas x 4 strategies
    png = (out / "eval.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "best_of_n: N =" in capsys.readouterr().out
