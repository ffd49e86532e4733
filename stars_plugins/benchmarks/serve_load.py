"""`stars bench --serve`: a bounded load test of `stars serve` on loopback.

It starts `stars serve` as a child process on a free 127.0.0.1 port, then:
1. concurrent: C streaming clients x R requests each, all at once;
2. sequential: the same requests one after another (the baseline for throughput);
3. disconnects: the concurrent phase again with a fraction of the clients hanging up after their
   first streamed text; the others must complete, and the server's RSS must come back to its
   level after phase 1 once it is idle.
It reports errors, completeness, accepted tokens/s, latency percentiles and RSS, writes JSON and
stops the server with SIGTERM (which must drain and exit cleanly).

With `--soak-phases P` it runs a soak test instead: P concurrent phases of `--soak-requests`
requests each (the clients share them; `--disconnect-fraction` of the clients hang up mid-stream),
with the server's RSS after every phase, once it is idle. It passes when every phase served its
requests, the RSS after the last phase is at most `SOAK_TOLERANCE` above the RSS after phase 2, and
the idle RSS after the run is within `IDLE_TOLERANCE` of the RSS after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RSS_TOLERANCE = 0.10  # "back to baseline": within 10 % of the RSS after the first concurrent phase
SOAK_TOLERANCE = 0.10  # soak: RSS after the last phase vs after phase 2
IDLE_TOLERANCE = 0.15  # soak: idle RSS after the run vs after warm-up


def add_bench_serve_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("bench --serve (load test of `stars serve` on loopback)")
    group.add_argument(
        "--serve",
        action="store_true",
        help="start `stars serve` on 127.0.0.1 and load it with concurrent streaming clients",
    )
    group.add_argument("--clients", type=int, default=32, help="with --serve: concurrent streaming clients")
    group.add_argument("--requests-per-client", type=int, default=4, help="with --serve: requests per client")
    group.add_argument(
        "--disconnect-fraction",
        type=float,
        default=0.25,
        help="with --serve: share of clients that hang up mid-stream in the last phase",
    )
    group.add_argument(
        "--sequential-requests",
        type=int,
        default=None,
        help="with --serve: how many of the requests the sequential baseline sends (default: all)",
    )
    group.add_argument(
        "--soak-phases",
        type=int,
        default=0,
        help="with --serve: a soak test of this many concurrent phases (with hang-ups), RSS after each, "
        "instead of the concurrent / sequential / disconnect phases",
    )
    group.add_argument("--soak-requests", type=int, default=200, help="with --soak-phases: requests per phase")


@dataclass
class Outcome:
    """One streamed request as the client saw it."""

    ok: bool = False
    complete: bool = False  # [DONE] received and every choice finished
    disconnected: bool = False
    tokens: int = 0
    latency: float = 0.0
    first_text: float | None = None
    error: str | None = None


@dataclass
class Phase:
    name: str
    wall_seconds: float
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        served = [o for o in self.outcomes if not o.disconnected]
        latencies = sorted(o.latency for o in served if o.ok)
        first = sorted(o.first_text for o in served if o.ok and o.first_text is not None)
        tokens = sum(o.tokens for o in served)
        return {
            "phase": self.name,
            "requests": len(self.outcomes),
            "disconnected": sum(o.disconnected for o in self.outcomes),
            "errors": sum(o.error is not None for o in self.outcomes),
            "complete": sum(o.complete for o in served),
            "expected_complete": len(served),
            "accepted_tokens": tokens,
            "wall_seconds": round(self.wall_seconds, 2),
            "tokens_per_second": round(tokens / self.wall_seconds, 1) if self.wall_seconds else 0.0,
            "latency_p50": _percentile(latencies, 50),
            "latency_p95": _percentile(latencies, 95),
            "latency_max": round(latencies[-1], 3) if latencies else None,
            "first_text_p50": _percentile(first, 50),
            "first_text_p95": _percentile(first, 95),
            "error_samples": sorted({o.error for o in self.outcomes if o.error})[:3],
        }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    rank = max(0, math.ceil(q / 100 * len(values)) - 1)
    return round(values[rank], 3)


# ---------------------------------------------------------------------------- one streamed request
async def stream_request(client: Any, body: dict[str, Any], *, hang_up: bool = False) -> Outcome:
    """POST a streaming chat completion and read its SSE; with `hang_up`, close after the first text."""
    outcome = Outcome()
    start = time.perf_counter()
    finished: set[int] = set()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                outcome.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return outcome
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    outcome.complete = len(finished) == body.get("n", 1)
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    outcome.error = chunk["error"].get("message", "error")
                    break
                if chunk.get("usage"):
                    outcome.tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        if outcome.first_text is None:
                            outcome.first_text = time.perf_counter() - start
                        if hang_up:
                            outcome.disconnected = True
                            outcome.ok = True
                            return outcome  # leaving the block closes the connection mid-stream
                    if choice.get("finish_reason"):
                        finished.add(choice["index"])
    except Exception as exc:  # a transport error is an error of this request, not of the bench
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.latency = time.perf_counter() - start
    outcome.ok = outcome.error is None and outcome.complete
    return outcome


def request_body(prompt: str, seed: int, max_tokens: int) -> dict[str, Any]:
    return {
        "model": "stars",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def run_concurrent(base_url: str, bodies: list[list[dict[str, Any]]], hang_up: set[int]) -> Phase:
    """Client c sends bodies[c] one after another; all clients at once."""
    import httpx

    limits = httpx.Limits(max_connections=len(bodies) + 4, max_keepalive_connections=len(bodies) + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(600.0), limits=limits) as client:

        async def one_client(c: int) -> list[Outcome]:
            return [await stream_request(client, body, hang_up=c in hang_up) for body in bodies[c]]

        start = time.perf_counter()
        per_client = await asyncio.gather(*(one_client(c) for c in range(len(bodies))))
        wall = time.perf_counter() - start
    return Phase("", wall, [o for outcomes in per_client for o in outcomes])


async def run_sequential(base_url: str, bodies: list[dict[str, Any]]) -> Phase:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(600.0)) as client:
        start = time.perf_counter()
        outcomes = [await stream_request(client, body) for body in bodies]
        wall = time.perf_counter() - start
    return Phase("", wall, outcomes)


# ---------------------------------------------------------------------------- the server process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(extra_args: list[str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "stars_plugins.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    log = log_path.open("wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 600.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stars serve exited with code {process.returncode} before it was ready")
        try:
            return httpx.get(f"{base_url}/health", timeout=2.0).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise TimeoutError(f"stars serve did not answer /health within {timeout:.0f} s")


def wait_idle(base_url: str, timeout: float = 120.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = httpx.get(f"{base_url}/health", timeout=5.0).json()
        if not health["active_requests"] and not health["queued_requests"] and not health["scheduler_busy"]:
            return health
        time.sleep(0.2)
    raise TimeoutError(f"server still busy after {timeout:.0f} s: {health}")


def stop_server(process: subprocess.Popen[bytes], grace: float) -> int | None:
    """SIGTERM, then wait for the drain; returns the exit code (None: had to be killed)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=grace + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


# ---------------------------------------------------------------------------- the command
def _server_args(args: argparse.Namespace) -> list[str]:
    extra = [
        "--horizon",
        str(args.horizon),
        "--candidates",
        str(args.candidates),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--max-rejections",
        str(args.max_rejections),
        "--temperature",
        str(args.temperature),
        "--no-access-log",
        "--graceful-shutdown",
        "30",
        "--max-concurrent-requests",
        str(max(64, args.clients)),
        "--max-queued-requests",
        str(max(256, args.clients * 2)),
    ]
    for option in ("policy", "reward", "device"):
        if getattr(args, option, None):
            extra += [f"--{option}", getattr(args, option)]
    if args.target_reward is not None:
        extra += ["--target-reward", str(args.target_reward)]
    if getattr(args, "malloc_arena_max", None) is not None:
        extra += ["--malloc-arena-max", str(args.malloc_arena_max)]
    if getattr(args, "no_malloc_trim", False):
        extra.append("--no-malloc-trim")
    return extra


def bench_serve_command(args: argparse.Namespace) -> int:
    from stars_plugins.benchmarks.strategies import builtin_prompts, load_prompt_file

    prompts = (load_prompt_file(args.prompts) if args.prompts else builtin_prompts())[: args.num_prompts]
    if args.soak_phases:
        return bench_soak_command(args, prompts)
    clients, per_client = args.clients, args.requests_per_client
    bodies = [
        [
            request_body(
                prompts[(c * per_client + r) % len(prompts)], seed=c * per_client + r, max_tokens=args.max_new_tokens
            )
            for r in range(per_client)
        ]
        for c in range(clients)
    ]
    flat = [body for client in bodies for body in client]
    sequential = flat[: args.sequential_requests or len(flat)]
    hang_up = set(range(round(clients * args.disconnect_fraction)))

    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/serve.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = output.with_suffix(".server.log")
    print(f"starting stars serve on {base_url} (log: {log_path})", file=sys.stderr)
    process = start_server(_server_args(args), log_path, port)
    report: dict[str, Any] = {
        "command": "stars " + " ".join(sys.argv[1:]),
        "clients": clients,
        "requests_per_client": per_client,
        "max_tokens": args.max_new_tokens,
        "horizon": args.horizon,
        "num_candidates": args.candidates,
    }
    try:
        wait_healthy(base_url, process)
        asyncio.run(run_sequential(base_url, flat[:2]))  # warm-up: first round, reward model
        rss = {"after_warmup": rss_mib(process.pid)}

        phases = []
        print(f"concurrent: {clients} clients x {per_client} requests", file=sys.stderr)
        concurrent = asyncio.run(run_concurrent(base_url, bodies, set()))
        concurrent.name = "concurrent"
        phases.append(concurrent)
        wait_idle(base_url)
        rss["after_concurrent"] = rss_mib(process.pid)

        print(f"sequential: {len(sequential)} requests one after another", file=sys.stderr)
        serial = asyncio.run(run_sequential(base_url, sequential))
        serial.name = "sequential"
        phases.append(serial)

        print(f"disconnects: {len(hang_up)} of {clients} clients hang up mid-stream", file=sys.stderr)
        dropped = asyncio.run(run_concurrent(base_url, bodies, hang_up))
        dropped.name = "concurrent_with_disconnects"
        phases.append(dropped)
        health = wait_idle(base_url)
        time.sleep(1.0)
        rss["after_disconnects_idle"] = rss_mib(process.pid)
    finally:
        exit_code = stop_server(process, grace=30)

    summaries = [p.summary() for p in phases]
    ratio = (
        summaries[0]["tokens_per_second"] / summaries[1]["tokens_per_second"]
        if summaries[1]["tokens_per_second"]
        else float("nan")
    )
    rss_growth = (rss["after_disconnects_idle"] - rss["after_concurrent"]) / rss["after_concurrent"]
    report.update(
        phases=summaries,
        throughput_ratio=round(ratio, 2),
        rss_mib=rss,
        rss_back_to_baseline=rss_growth <= RSS_TOLERANCE,
        rss_growth=round(rss_growth, 3),
        server_request_counts=health.get("requests", {}),
        sigterm_exit_code=exit_code,
    )
    output.write_text(json.dumps(report, indent=2))
    print(serve_table(report))
    print(f"\nwrote {output}")
    failures = [s for s in summaries if s["errors"] or s["complete"] != s["expected_complete"]]
    return 1 if failures or not report["rss_back_to_baseline"] or exit_code != 0 else 0


# ---------------------------------------------------------------------------- soak mode
class PeakRSS:
    """The highest RSS of a process while the block runs, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def soak_bodies(prompts: list[str], clients: int, requests: int, phase: int, max_tokens: int) -> list[list[dict]]:
    """`requests` bodies dealt round-robin to `clients` (seeds differ from phase to phase)."""
    bodies: list[list[dict[str, Any]]] = [[] for _ in range(min(clients, requests))]
    for i in range(requests):
        seed = phase * requests + i
        bodies[i % len(bodies)].append(request_body(prompts[seed % len(prompts)], seed=seed, max_tokens=max_tokens))
    return bodies


def bench_soak_command(args: argparse.Namespace, prompts: list[str]) -> int:
    if args.soak_phases < 2 or args.soak_requests < 1:
        raise ValueError("--soak-phases must be at least 2 (the run is compared to phase 2) and --soak-requests >= 1")
    if not prompts:
        raise ValueError("no prompts to run; check --prompts and --num-prompts")
    clients = min(args.clients, args.soak_requests)
    hang_up = set(range(round(clients * args.disconnect_fraction)))
    output = Path(args.output if args.output != "bench-results/bench.json" else "bench-results/soak.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = output.with_suffix(".server.log")
    print(f"starting stars serve on {base_url} (log: {log_path})", file=sys.stderr)
    process = start_server(_server_args(args), log_path, port)
    report: dict[str, Any] = {
        "command": "stars " + " ".join(sys.argv[1:]),
        "clients": clients,
        "hanging_up_clients": len(hang_up),
        "requests_per_phase": args.soak_requests,
        "max_tokens": args.max_new_tokens,
        "horizon": args.horizon,
        "num_candidates": args.candidates,
        "server_args": _server_args(args),
    }
    phases: list[Phase] = []
    rss: dict[str, Any] = {"per_phase": [], "peak_per_phase": []}
    try:
        wait_healthy(base_url, process)
        asyncio.run(run_sequential(base_url, [request_body(prompts[0], 0, args.max_new_tokens)] * 2))  # warm-up
        wait_idle(base_url)
        rss["after_warmup"] = rss_mib(process.pid)
        for phase in range(1, args.soak_phases + 1):
            bodies = soak_bodies(prompts, clients, args.soak_requests, phase, args.max_new_tokens)
            with PeakRSS(process.pid) as peak:
                run = asyncio.run(run_concurrent(base_url, bodies, hang_up))
            rss["peak_per_phase"].append(peak.peak)
            run.name = f"soak {phase}"
            phases.append(run)
            health = wait_idle(base_url)
            rss["per_phase"].append(rss_mib(process.pid))
            s = run.summary()
            print(
                f"phase {phase}/{args.soak_phases}: {s['requests']} requests, {s['disconnected']} hung up, "
                f"{s['errors']} errors, {s['wall_seconds']} s; RSS {rss['per_phase'][-1]} MiB "
                f"(peak {rss['peak_per_phase'][-1]})",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(2.0)
        rss["idle_end"] = rss_mib(process.pid)
    finally:
        exit_code = stop_server(process, grace=30)
    summaries = [p.summary() for p in phases]
    second, last = rss["per_phase"][1], rss["per_phase"][-1]
    rows = clients * args.candidates
    report.update(
        phases=summaries,
        rss_mib=rss,
        rows_in_flight=rows,
        # what one concurrent row costs at the peak, above what the server settles at when idle
        mib_per_row=round((max(rss["peak_per_phase"]) - rss["idle_end"]) / rows, 1),
        soak_growth=round((last - second) / second, 4),
        idle_growth=round((rss["idle_end"] - rss["after_warmup"]) / rss["after_warmup"], 4),
        server_request_counts=health.get("requests", {}),
        sigterm_exit_code=exit_code,
    )
    report["soak_within_tolerance"] = report["soak_growth"] <= SOAK_TOLERANCE
    report["idle_within_tolerance"] = abs(report["idle_growth"]) <= IDLE_TOLERANCE
    output.write_text(json.dumps(report, indent=2))
    print(soak_table(report))
    print(f"\nwrote {output}")
    failures = [s for s in summaries if s["errors"] or s["complete"] != s["expected_complete"]]
    passed = report["soak_within_tolerance"] and report["idle_within_tolerance"]
    return 1 if failures or not passed or exit_code != 0 else 0


def soak_table(report: dict[str, Any]) -> str:
    rss = report["rss_mib"]
    lines = [
        "| phase | requests | hung up | errors | complete | tokens/s | latency p50 / p95 s | peak RSS MiB "
        "| RSS after, idle MiB |",
        "|" + "---|" * 9,
    ]
    for s, peak, mib in zip(report["phases"], rss["peak_per_phase"], rss["per_phase"], strict=True):
        lines.append(
            f"| {s['phase']} | {s['requests']} | {s['disconnected']} | {s['errors']} | "
            f"{s['complete']}/{s['expected_complete']} | {s['tokens_per_second']} | "
            f"{s['latency_p50']} / {s['latency_p95']} | {peak} | {mib} |"
        )
    lines += [
        "",
        f"server RSS MiB: after warm-up {rss['after_warmup']}, after phase 2 {rss['per_phase'][1]}, after the last "
        f"phase {rss['per_phase'][-1]} ({report['soak_growth']:+.1%} vs phase 2; within {SOAK_TOLERANCE:.0%}: "
        f"{report['soak_within_tolerance']}), idle after the run {rss['idle_end']} ({report['idle_growth']:+.1%} "
        f"vs warm-up; within {IDLE_TOLERANCE:.0%}: {report['idle_within_tolerance']})",
        f"memory per concurrent row: {report['mib_per_row']} MiB (highest peak minus idle RSS, "
        f"{report['rows_in_flight']} rows = clients x candidates)",
        f"server request counts: {report['server_request_counts']}; SIGTERM exit code: {report['sigterm_exit_code']}",
    ]
    return "\n".join(lines)


def serve_table(report: dict[str, Any]) -> str:
    head = (
        "| phase | requests | hung up | errors | complete | accepted tokens | wall s | tokens/s "
        "| latency p50 / p95 / max s | first text p50 / p95 s |"
    )
    lines = [head, "|" + "---|" * 10]
    for s in report["phases"]:
        lines.append(
            f"| {s['phase']} | {s['requests']} | {s['disconnected']} | {s['errors']} | "
            f"{s['complete']}/{s['expected_complete']} | {s['accepted_tokens']} | {s['wall_seconds']} | "
            f"{s['tokens_per_second']} | {s['latency_p50']} / {s['latency_p95']} / {s['latency_max']} | "
            f"{s['first_text_p50']} / {s['first_text_p95']} |"
        )
    rss = report["rss_mib"]
    lines += [
        "",
        f"concurrent vs sequential accepted tokens/s: {report['throughput_ratio']}x",
        f"server RSS MiB: after warm-up {rss['after_warmup']}, after concurrent phase {rss['after_concurrent']}, "
        f"idle after the disconnect phase {rss['after_disconnects_idle']} "
        f"({report['rss_growth']:+.1%}; back to baseline: {report['rss_back_to_baseline']})",
        f"server request counts: {report['server_request_counts']}; SIGTERM exit code: {report['sigterm_exit_code']}",
    ]
    return "\n".join(lines)


__all__ = [
    "Outcome",
    "Phase",
    "add_bench_serve_arguments",
    "bench_serve_command",
    "bench_soak_command",
    "soak_bodies",
    "stream_request",
]
