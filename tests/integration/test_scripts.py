"""The GPU benchmark script cannot run here on its real models, so its code path is smoke-tested on
tiny models on the CPU: it must build, measure every strategy and print its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # runs the whole GPU benchmark script end to end (about 35 s on 2 cores)
def test_gpu_bench_script_runs_end_to_end_on_tiny_models(tmp_path):
    output = tmp_path / "gpu.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_bench.py"),
            "--tiny",
            "--device",
            "cpu",
            "--batch-sizes",
            "1,4",
            "--max-new-tokens",
            "12",
            "--horizon",
            "4",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "| strategy | batch | accepted tok/s" in done.stdout
    report = json.loads(output.read_text())
    assert report["device"] == "cpu"
    assert {(r["strategy"], r["batch"]) for r in report["rows"]} == {
        (s, b) for s in ("vanilla", "stars", "cards") for b in (1, 4)
    }
    assert all(r["tokens_per_second"] > 0 for r in report["rows"])
    assert {(r["top_k"], r["top_p"]) for r in report["overhead"]["rows"]} == {(0, 1.0), (0, 0.9), (40, 1.0), (40, 0.9)}
    assert report["reward_cache"]["max_abs_score_difference"] < 1e-4
    assert report["reward_cache"]["cached"]["reward_tokens"] < report["reward_cache"]["uncached"]["reward_tokens"]
