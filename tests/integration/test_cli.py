"""The `stars` command on the embedded models with tiny budgets: what a user types, what comes out.
Mistakes in arguments are reported before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stars_plugins.runtime
from reward_training.__main__ import DEFAULT_OUTPUT as DEFAULT_TRAIN_OUTPUT
from reward_training.__main__ import main as train_main
from stars_plugins.cli import main

FAST = ["--reward", "sentiment", "--max-new-tokens", "8", "--horizon", "4", "--seed", "0"]
slow = pytest.mark.slow  # loads the embedded policy


@pytest.fixture
def no_policy(monkeypatch):
    """Fails the test if the command loads a policy."""

    def refuse(*args, **kwargs):
        raise AssertionError("the policy was loaded before the mistake was reported")

    monkeypatch.setattr(stars_plugins.runtime, "load_policy", refuse)


@slow
def test_generate_json_prints_text_reward_and_stats(capsys):
    assert main(["generate", "Name a color.", "--json", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "stars" and result["text"].strip()
    assert result["stats"]["accepted_tokens"] <= 8 and result["stats"]["reward_calls"] >= 1
    assert result["finish_reason"] in ("eos", "length", "stop") and result["error"] is None


@slow
def test_generate_stream_prints_the_same_text_as_the_segments(capsys):
    assert main(["generate", "Name a fruit.", "--stream", *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "[stars] reward" in captured.err


@slow
def test_bench_writes_the_table_comparisons_and_json(tmp_path, capsys):
    output = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--strategies",
            "vanilla,stars",
            "--batch-sizes",
            "1,16",
            "--num-prompts",
            "2",
            "--candidates",
            "1",
            "--no-progress",
            "--output",
            str(output),
            *FAST,
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| stars | 2 |" in printed and "stars_b2_vs_stars_b1_throughput" in printed  # 16 asked, 2 ran
    assert "| stars | 16 |" not in printed and "batch sizes [1, 16] run as [1, 2]" in captured.err
    report = json.loads(output.read_text())
    rows = {(r["strategy"], r["batch_size"]): r for r in report["rows"]}
    assert set(rows) == {("vanilla", 1), ("vanilla", 2), ("stars", 1), ("stars", 2)}
    for row in rows.values():
        assert row["requests"] == 2 and row["accepted_tokens"] > 0 and row["tokens_per_second"] > 0
        assert row["rejected_tokens"] <= row["rejections"] * 4
    assert rows[("stars", 1)]["rewards"] == rows[("stars", 2)]["rewards"]  # batching changes nothing


@slow
def test_bench_concurrent_reports_both_modes(tmp_path, capsys):
    output = tmp_path / "concurrent.json"
    code = main(
        [
            "bench",
            "--concurrent",
            "--callers",
            "4",
            "--num-prompts",
            "4",
            "--no-progress",
            "--output",
            str(output),
            *FAST,
        ]
    )
    assert code == 0
    report = json.loads(output.read_text())
    for mode in ("sequential", "concurrent"):
        assert report[mode]["requests"] == 4 and report[mode]["accepted_tokens"] > 0
        assert 0 < report[mode]["latency_p50"] <= report[mode]["latency_p95"] <= report[mode]["wall_seconds"]
    assert [c["horizon"] for c in report["configs"]] == [4, 2]  # two groups: K and K/2
    assert "concurrent vs sequential throughput" in capsys.readouterr().out


@slow
def test_demo_runs_plain_sampling_and_stars_side_by_side(capsys):
    assert main(["demo", "--limit", "1", *FAST]) == 0
    out = capsys.readouterr().out
    assert "## (harmful)" in out and "## (benign)" in out
    assert out.count("[vanilla]") == 2 and out.count("[stars  ]") == 2
    assert "vanilla: mean reward" in out and "stars  : mean reward" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "hi", "--policy", "/no/such/folder"], "/no/such/folder"),
        (["generate", "hi", "--horizon", "0"], "horizon"),
        (["generate", "hi", "--horizon", "-3"], "horizon=-3"),
        (["generate", "", "--reward", "sentiment"], "prompt 0 is empty"),
        (["generate", "hi", "--reward", "harmles"], "did you mean 'harmless'"),
        (["generate", "hi", "--device", "bogus"], "device='bogus'"),
        (["generate", "hi", "--temperature", "-1"], "temperature"),
        (["demo", "--horizon", "0"], "horizon"),
        (["eval", "--max-new-tokens", "0"], "max_new_tokens"),
        (["bench", "--prompts", "/no/such/prompts.txt"], "/no/such/prompts.txt"),
        (["bench", "--strategies", "stars,nope"], "nope"),
        (["bench", "--batch-sizes", "1,x"], "--batch-sizes"),
        (["bench", "--candidates", "0", "--concurrent"], "num_candidates"),
    ],
)
def test_bad_input_is_one_clear_line_before_any_model_loads(argv, message, capsys, no_policy):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stars {argv[0]}: error:") and message in err
    assert "Traceback" not in err


def test_a_malformed_prompt_file_line_is_named(tmp_path, capsys, no_policy):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a color."}\n\n{"prompt": 3}\n')
    assert main(["bench", "--prompts", str(prompts), "--no-progress", *FAST]) == 2
    assert f"{prompts}:3: expected a JSON object with a 'prompt' string" in capsys.readouterr().err


def test_a_zero_limit_is_refused_by_the_argument_parser(capsys, no_policy):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--limit", "0"])
    assert exit_.value.code == 2 and "expected a number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "expected"), [("none", None), ("None", None), ("0.5", 0.5), ("1", 1.0), ("0", 0.0)])
def test_the_target_cap_quantile_flag_reaches_the_config(value, expected):
    from stars_plugins import StarsConfig
    from stars_plugins.cli import build_parser
    from stars_plugins.cli.common import config_from_args as _config

    args = build_parser().parse_args(["generate", "hi", "--target-cap-quantile", value])
    assert _config(args).target_cap_quantile == expected
    defaults = _config(build_parser().parse_args(["generate", "hi"]))
    assert defaults == StarsConfig(max_new_tokens=128)  # no flag: the config's own defaults


def test_a_target_cap_quantile_outside_0_1_is_refused_by_the_argument_parser(capsys, no_policy):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "hi", "--target-cap-quantile", "1.5"])
    assert exit_.value.code == 2 and "expected a number in [0, 1] or 'none'" in capsys.readouterr().err


def test_train_reward_writes_a_new_folder_by_default_never_the_shipped_weights(tmp_path, monkeypatch, capsys):
    import reward_training.train as training
    from stars_plugins.rewards.harmless import default_head_path

    calls = []

    class Report:
        def as_dict(self):
            return {"seed": 0}

    def fake_train(data, output, **kwargs):
        calls.append(Path(output))
        return Report()

    monkeypatch.setattr(training, "train_harmless_head", fake_train)
    monkeypatch.chdir(tmp_path)
    assert train_main(["--no-progress"]) == 0
    [output] = calls
    assert output == Path(DEFAULT_TRAIN_OUTPUT)
    assert default_head_path().parent.resolve() not in [output.resolve(), *output.resolve().parents]
    assert f"wrote {DEFAULT_TRAIN_OUTPUT}/harmless_head.safetensors" in capsys.readouterr().err
