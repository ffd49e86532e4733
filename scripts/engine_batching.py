"""How much a llama-server gains from batching by itself: the same 16 requests one at a time, then
all at once (no STARS involved). A client cannot batch faster than its server does.

    python scripts/engine_batching.py http://127.0.0.1:8080 [--requests 16] [--tokens 32]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    base = httpx.post(
        f"{args.url}/tokenize", json={"content": "Write a short story about a lighthouse keeper."}, timeout=60
    ).json()["tokens"]

    def complete(i: int, attempt: int) -> None:
        body = {
            "prompt": [*base, 100 + i, 200 + attempt],
            "n_predict": args.tokens,
            "temperature": 1.0,
            "seed": i,
            "ignore_eos": True,
            "return_tokens": True,
            "response_fields": ["tokens"],
        }
        httpx.post(f"{args.url}/completion", json=body, timeout=600).raise_for_status()

    complete(0, 0)  # warm-up
    start = time.perf_counter()
    for i in range(args.requests):
        complete(i, 1)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(args.requests) as pool:
        list(pool.map(lambda i: complete(i, 2), range(args.requests)))
    concurrent = time.perf_counter() - start
    tokens = args.requests * args.tokens
    print(
        f"one at a time: {tokens / sequential:.1f} tok/s; {args.requests} at once: {tokens / concurrent:.1f} tok/s; "
        f"ratio {sequential / concurrent:.2f}"
    )


if __name__ == "__main__":
    main()
