"""`stars bench --memory`: resident memory of an in-process loop of batched calls.

It loads the runtime, warms it up with one call, then runs `--memory-calls` batched
`runtime.generate` calls on the same prompts (a different seed each), each followed by one stream
that hangs up after its first segment (a client going away). After every call it records the RSS
and, at the 5th and the last call, counts of live tensors, request objects and threads. The loop
passes when the RSS after the last call is within `LOOP_TOLERANCE` of the RSS after the 5th, the
idle RSS at the end within `IDLE_TOLERANCE` of the RSS after warm-up, and no object count grew.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOOP_TOLERANCE = 0.03  # RSS after the last call vs after the 5th
IDLE_TOLERANCE = 0.15  # idle RSS at the end vs after warm-up
REFERENCE_CALL = 5


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (default: this one), from /proc/<pid>/status (Linux)."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid or os.getpid()}")


def live_objects() -> dict[str, int]:
    """Live tensors, request states and threads, after a full garbage collection."""
    import torch

    from stars_plugins.decoding.state import RequestState

    gc.collect()
    tensors = requests = 0
    for obj in gc.get_objects():
        kind = type(obj)  # not isinstance: that reads __class__, which some module proxies warn about
        if kind is RequestState:
            requests += 1
        elif issubclass(kind, torch.Tensor):
            tensors += 1
    return {"tensors": tensors, "requests": requests, "threads": threading.active_count()}


def add_bench_memory_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("bench --memory (RSS of an in-process loop of batched calls)")
    group.add_argument(
        "--memory", action="store_true", help="RSS of a loop of batched calls in this process, call after call"
    )
    group.add_argument("--memory-calls", type=int, default=50, help="with --memory: batched calls in the loop")
    group.add_argument(
        "--malloc-arena-max",
        type=int,
        default=None,
        metavar="N",
        help="with --memory or --serve: cap glibc's malloc arenas at N (default: --memory leaves glibc's "
        "default, --serve uses the server's default, 2; 0: glibc's default)",
    )
    group.add_argument(
        "--no-malloc-trim",
        action="store_true",
        help="with --memory or --serve: do not give freed memory back when the scheduler's load drops",
    )


def bench_memory_command(
    args: argparse.Namespace,
    config_from_args: Callable[[argparse.Namespace], Any],
    runtime_from_args: Callable[[argparse.Namespace], Any],
) -> int:
    """The in-process loop. The CLI passes its own builders of the config and the runtime (called
    here, in this order, after the arena cap: a bad flag fails before the models load)."""
    from stars_plugins.benchmarks.strategies import builtin_prompts, load_prompt_file
    from stars_plugins.memory import limit_malloc_arenas

    if args.memory_calls < REFERENCE_CALL + 1:
        raise ValueError(f"--memory-calls must be more than {REFERENCE_CALL} (the loop is compared to its 5th call)")
    if args.malloc_arena_max:
        limit_malloc_arenas(args.malloc_arena_max)
    prompts = (load_prompt_file(args.prompts) if args.prompts else builtin_prompts())[: args.num_prompts]
    if not prompts:
        raise ValueError("no prompts to run; check --prompts and --num-prompts")
    config = config_from_args(args)  # a bad flag fails before the models load
    runtime = runtime_from_args(args)
    runtime.scheduler.configure(trim_memory=not args.no_malloc_trim)

    def one_call(seed: int) -> int:
        results = runtime.generate(prompts, config, seed=seed)
        with runtime.stream(prompts[seed % len(prompts)], config, seed=seed) as stream:
            next(stream, None)  # hang up after the first segment
        deadline = time.monotonic() + 60
        while runtime.scheduler.busy and time.monotonic() < deadline:  # the hung-up request leaves
            time.sleep(0.01)
        return sum(r.stats.accepted_tokens for r in results)

    rss_before = rss_mib()
    one_call(0)
    rss: dict[str, Any] = {"after_load": rss_before, "after_warmup": rss_mib(), "per_call": []}
    counts: dict[str, dict[str, int]] = {}
    tokens, start = 0, time.perf_counter()
    for call in range(1, args.memory_calls + 1):
        tokens += one_call(call)
        rss["per_call"].append(rss_mib())
        if call == REFERENCE_CALL:
            counts["after_call_5"] = live_objects()
        print(f"call {call}/{args.memory_calls}: RSS {rss['per_call'][-1]} MiB", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    counts["after_last_call"] = live_objects()
    time.sleep(1.0)
    rss["idle_end"] = rss_mib()

    reference, last = rss["per_call"][REFERENCE_CALL - 1], rss["per_call"][-1]
    loop_growth = (last - reference) / reference
    idle_growth = (rss["idle_end"] - rss["after_warmup"]) / rss["after_warmup"]
    grown = {k: v for k, v in counts["after_last_call"].items() if v > counts["after_call_5"][k]}
    report = {
        "command": "stars " + " ".join(sys.argv[1:]),
        "calls": args.memory_calls,
        "prompts_per_call": len(prompts),
        "num_candidates": config.num_candidates,
        "max_new_tokens": config.max_new_tokens,
        "horizon": config.horizon,
        "malloc_trim": not args.no_malloc_trim,
        "malloc_arena_max": args.malloc_arena_max or os.environ.get("MALLOC_ARENA_MAX") or "glibc default",
        "trims": runtime.scheduler.trimmer.trims,
        "trim_seconds": round(runtime.scheduler.trimmer.seconds, 3),
        "accepted_tokens": tokens,
        "wall_seconds": round(wall, 1),
        "rss_mib": rss,
        "loop_growth": round(loop_growth, 4),
        "idle_growth": round(idle_growth, 4),
        "objects": counts,
        "objects_grown": grown,
        "loop_within_tolerance": loop_growth <= LOOP_TOLERANCE,
        "idle_within_tolerance": idle_growth <= IDLE_TOLERANCE,
    }
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/memory.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(memory_table(report))
    print(f"\nwrote {output}")
    return 0 if report["loop_within_tolerance"] and report["idle_within_tolerance"] and not grown else 1


def memory_table(report: dict[str, Any]) -> str:
    rss = report["rss_mib"]
    per_call = rss["per_call"]
    marks = sorted({1, REFERENCE_CALL, *range(10, len(per_call) + 1, 10), len(per_call)})
    lines = [
        "| after call | " + " | ".join(str(m) for m in marks) + " |",
        "|---|" + "---|" * len(marks),
        "| RSS MiB | " + " | ".join(str(per_call[m - 1]) for m in marks) + " |",
        "",
        f"RSS MiB: after load {rss['after_load']}, after warm-up {rss['after_warmup']}, idle at the end "
        f"{rss['idle_end']} ({report['idle_growth']:+.1%} vs warm-up; within "
        f"{IDLE_TOLERANCE:.0%}: {report['idle_within_tolerance']})",
        f"last call vs call {REFERENCE_CALL}: {report['loop_growth']:+.1%} (within {LOOP_TOLERANCE:.0%}: "
        f"{report['loop_within_tolerance']})",
        f"live objects after call {REFERENCE_CALL} {report['objects']['after_call_5']}, after the last "
        f"{report['objects']['after_last_call']}; grown: {report['objects_grown'] or 'none'}",
        f"malloc trim: {report['malloc_trim']} ({report['trims']} trims, {report['trim_seconds']} s in all); "
        f"malloc arenas: {report['malloc_arena_max']}; "
        f"{report['accepted_tokens']} accepted tokens in {report['wall_seconds']} s",
    ]
    return "\n".join(lines)


__all__ = ["add_bench_memory_arguments", "bench_memory_command", "live_objects", "memory_table", "rss_mib"]
