"""`stars bench --decode-step`: what one decode step of the policy's lockstep batch costs, by rows and
cached columns, with the cache appended in place (`backends/hf/kv_cache.py`, the default) and with
transformers' `DynamicLayer`, which copies the whole cache every step. The two run alternately in
one process on the same batch shapes, so the ratio is read side by side. The concatenating runs
swap `batch.grow_in_place` out for their duration: run this bench alone in its process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from stars_plugins.backends.hf import batch as batch_module
from stars_plugins.backends.sampling import RowSampling
from stars_plugins.config import StarsConfig

MODES = ("in place", "concatenating")


@contextmanager
def _cache_mode(mode: str) -> Iterator[None]:
    saved = batch_module.grow_in_place
    if mode == "concatenating":
        batch_module.grow_in_place = lambda cache: cache  # type: ignore[assignment]
    try:
        yield
    finally:
        batch_module.grow_in_place = saved  # type: ignore[assignment]


def time_steps(policy: Any, rows: int, columns: int, steps: int, prompt: Sequence[int]) -> float:
    """Seconds per decode step of `rows` rows once the cache holds about `columns` columns."""
    sampling = [RowSampling(1.0, 40, 1.0, seed=0, stream=i) for i in range(rows)]
    batch = policy.open_batch([list(prompt)], [rows], sampling)
    decode = max(columns - len(prompt), 1)
    batch.begin(list(range(rows)), [decode + steps + 1] * rows)
    batch.advance(decode)
    device = torch.device(policy.device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    batch.advance(steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    batch.free()
    return seconds


def run_decode_step(
    policy: Any,
    *,
    rows: Sequence[int] = (4, 16, 48),
    columns: Sequence[int] = (128, 512),
    steps: int = 16,
    repeats: int = 2,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    if not hasattr(policy, "model"):
        raise ValueError("--decode-step times the in-process transformers policy; this policy has no local model")
    prompt = list(policy.prepare(["Write a short story about a lighthouse keeper."], StarsConfig())[0].token_ids)
    results = []
    for n_rows in rows:
        for n_columns in columns:
            if n_columns <= len(prompt):
                continue
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(repeats):  # alternate, so drifting machine load hits both alike
                for mode in MODES:
                    with _cache_mode(mode):
                        times[mode].append(time_steps(policy, n_rows, n_columns, steps, prompt))
            row = {
                "rows": n_rows,
                "columns": n_columns,
                **{f"{mode} ms": round(1000 * min(times[mode]), 2) for mode in MODES},
            }
            row["speed-up"] = round(row["concatenating ms"] / row["in place ms"], 3)
            results.append(row)
            progress(f"rows {n_rows}, columns {n_columns}: {row}")
    return {"policy": getattr(policy, "name", "?"), "device": str(policy.device), "steps": steps, "rows": results}


def decode_step_table(report: dict[str, Any]) -> str:
    lines = [
        "| rows | cached columns | in place ms/step | concatenating ms/step | speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['rows']} | {r['columns']} | {r['in place ms']:.1f} | {r['concatenating ms']:.1f} | "
            f"{r['speed-up']:.2f}x |"
        )
    return "\n".join(lines)


__all__ = ["decode_step_table", "run_decode_step", "time_steps"]
