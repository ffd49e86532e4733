"""The `stars` command on the embedded models with tiny budgets: what a user types, what comes out."""

from __future__ import annotations

import json

import pytest

from stars_plugins.cli import main

FAST = ["--reward", "sentiment", "--max-new-tokens", "8", "--horizon", "4", "--seed", "0"]


def test_generate_json_prints_text_reward_and_stats(capsys):
    assert main(["generate", "Name a color.", "--json", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "stars" and result["text"].strip()
    assert result["stats"]["accepted_tokens"] <= 8 and result["stats"]["reward_calls"] >= 1
    assert result["finish_reason"] in ("eos", "length", "stop") and result["error"] is None


def test_generate_stream_prints_the_same_text_as_the_segments(capsys):
    assert main(["generate", "Name a fruit.", "--stream", *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "[stars] reward" in captured.err


def test_bench_writes_the_table_comparisons_and_json(tmp_path, capsys):
    output = tmp_path / "bench.json"
    code = main(["bench", "--strategies", "vanilla,stars", "--batch-sizes", "1,2", "--num-prompts", "2",
                 "--candidates", "1", "--no-progress", "--output", str(output), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| stars | 2 |" in printed and "stars_b2_vs_stars_b1_throughput" in printed
    report = json.loads(output.read_text())
    rows = {(r["strategy"], r["batch_size"]): r for r in report["rows"]}
    assert set(rows) == {("vanilla", 1), ("vanilla", 2), ("stars", 1), ("stars", 2)}
    for row in rows.values():
        assert row["requests"] == 2 and row["accepted_tokens"] > 0 and row["tokens_per_second"] > 0
        assert row["rejected_tokens"] <= row["rejections"] * 4
    assert rows[("stars", 1)]["rewards"] == rows[("stars", 2)]["rewards"]  # batching changes nothing


def test_bench_concurrent_reports_both_modes(tmp_path, capsys):
    output = tmp_path / "concurrent.json"
    code = main(["bench", "--concurrent", "--callers", "4", "--num-prompts", "4", "--no-progress",
                 "--output", str(output), *FAST])
    assert code == 0
    report = json.loads(output.read_text())
    for mode in ("sequential", "concurrent"):
        assert report[mode]["requests"] == 4 and report[mode]["accepted_tokens"] > 0
        assert 0 < report[mode]["latency_p50"] <= report[mode]["latency_p95"] <= report[mode]["wall_seconds"]
    assert [c["horizon"] for c in report["configs"]] == [4, 2]  # two groups: K and K/2
    assert "concurrent vs sequential throughput" in capsys.readouterr().out


def test_demo_runs_plain_sampling_and_stars_side_by_side(capsys):
    assert main(["demo", "--limit", "1", *FAST]) == 0
    out = capsys.readouterr().out
    assert "## (harmful)" in out and "## (benign)" in out
    assert out.count("[vanilla]") == 2 and out.count("[stars  ]") == 2
    assert "vanilla: mean reward" in out and "stars  : mean reward" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["generate", "hi", "--policy", "/no/such/folder"], "/no/such/folder"),
    (["generate", "hi", "--horizon", "0"], "horizon"),
    (["generate", "hi", "--reward", "harmles"], "harmles"),
    (["bench", "--prompts", "/no/such/prompts.txt"], "/no/such/prompts.txt"),
])
def test_bad_input_is_one_clear_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stars {argv[0]}: error:") and message in err
    assert "Traceback" not in err


def test_a_malformed_prompt_file_line_is_named(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a color."}\n\n{"prompt": 3}\n')
    assert main(["bench", "--prompts", str(prompts), "--no-progress", *FAST]) == 2
    assert f"{prompts}:3: expected a JSON object with a 'prompt' string" in capsys.readouterr().err
