"""`stars serve`: its options and the command. FastAPI and uvicorn are imported only when it runs,
so `import stars_plugins` (and every other `stars` command) works without the `serve` extra."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys

from stars_plugins.cli.common import config_from_args, runtime_from_args
from stars_plugins.server.protocol import ServerLimits

_DEFAULTS = ServerLimits()
DEFAULT_MALLOC_ARENAS = 2  # measured in docs/server.md, 'Memory'


def configure(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    group.add_argument("--port", type=int, default=8000)
    group.add_argument("--model-name", default="stars", help="the model id clients pass (model=...)")
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="environment variable holding the API key clients must send as 'Bearer <key>'",
    )
    group.add_argument(
        "--max-tokens-limit", type=int, default=_DEFAULTS.max_tokens, help="largest max_tokens a request may ask for"
    )
    group.add_argument(
        "--max-candidates-limit",
        type=int,
        default=_DEFAULTS.max_candidates,
        help="largest stars.num_candidates a request may ask for",
    )
    group.add_argument("--max-n", type=int, default=_DEFAULTS.max_n, help="largest n (choices per prompt)")
    group.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=_DEFAULTS.max_concurrent_requests,
        help="requests generating at once",
    )
    group.add_argument(
        "--max-queued-requests",
        type=int,
        default=_DEFAULTS.max_queued_requests,
        help="requests waiting for a slot; more are refused with 429",
    )
    group.add_argument(
        "--max-body-bytes",
        type=int,
        default=_DEFAULTS.max_body_bytes,
        help="larger request bodies are refused with 413",
    )
    group.add_argument("--max-batch-rows", type=int, default=None, help="rows of one lockstep batch (scheduler)")
    group.add_argument(
        "--graceful-shutdown",
        type=int,
        default=30,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests may take to finish",
    )
    group.add_argument("--log-prompts", action="store_true", help="log prompts and outputs (off by default)")
    memory = p.add_argument_group("memory (see docs/server.md, 'Memory')")
    memory.add_argument(
        "--malloc-arena-max",
        type=int,
        default=DEFAULT_MALLOC_ARENAS,
        metavar="N",
        help=f"cap glibc's malloc arenas at N before anything loads (default {DEFAULT_MALLOC_ARENAS}; 0: glibc's "
        "default of 8 per core; a MALLOC_ARENA_MAX in the environment wins)",
    )
    memory.add_argument(
        "--no-malloc-trim",
        action="store_true",
        help="do not give freed memory back to the system when the load drops (malloc_trim)",
    )
    group.add_argument("--no-access-log", action="store_true", help="no per-request access log lines")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from stars_plugins.server.app import create_app
    except ImportError as exc:
        raise ValueError(f"stars serve needs FastAPI and uvicorn: pip install 'stars-plugins[serve]' ({exc})") from exc
    _tune_malloc(args)  # before the models load and the server's threads start
    api_key = _api_key(args.api_key_env)
    if api_key is None and not _is_loopback(args.host):
        print(
            f"stars serve: warning: {args.host} is reachable from other machines and no --api-key-env is set",
            file=sys.stderr,
        )
    limits = ServerLimits(
        max_tokens=args.max_tokens_limit,
        max_candidates=args.max_candidates_limit,
        max_n=args.max_n,
        max_body_bytes=args.max_body_bytes,
        max_concurrent_requests=args.max_concurrent_requests,
        max_queued_requests=args.max_queued_requests,
    )
    runtime = runtime_from_args(args)
    runtime.config = config_from_args(args)  # the defaults a request starts from
    runtime.scheduler.configure(max_batch_rows=args.max_batch_rows, trim_memory=not args.no_malloc_trim)
    if args.log_prompts:
        logger = logging.getLogger("stars_plugins.server")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
    app = create_app(
        runtime,
        model_name=args.model_name,
        api_key=api_key,
        limits=limits,
        log_prompts=args.log_prompts,
        trim_memory=not args.no_malloc_trim,
    )
    print(
        f"stars serve: http://{args.host}:{args.port}/v1  model {args.model_name!r} = {runtime.model_name}, "
        f"reward {runtime.reward.name}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=args.graceful_shutdown,
        log_level="info",
    )
    # uvicorn drains on SIGTERM, then re-raises the signal under the handler it found: make that one
    # a no-op so that a drained server exits 0 rather than dying of the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run()  # SIGINT/SIGTERM: stop accepting, drain in-flight requests, exit
    print("stars serve: stopped", file=sys.stderr)
    return 0


def _tune_malloc(args: argparse.Namespace) -> None:
    """Fewer malloc arenas (glibc): the memory freed by finished batches is not kept in one pool
    per thread. A MALLOC_ARENA_MAX the user exported has already applied and is left alone."""
    if args.malloc_arena_max < 0:
        raise ValueError(f"--malloc-arena-max must be >= 0 (0: glibc's default), got {args.malloc_arena_max}")
    if args.malloc_arena_max and "MALLOC_ARENA_MAX" not in os.environ:
        from stars_plugins.memory import limit_malloc_arenas

        limit_malloc_arenas(args.malloc_arena_max)


def _api_key(env_var: str | None) -> str | None:
    if env_var is None:
        return None
    key = os.environ.get(env_var, "")
    if not key:
        raise ValueError(
            f"--api-key-env {env_var}: that environment variable is unset or empty; export {env_var}=<key> first"
        )
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
