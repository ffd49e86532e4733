"""A live llama.cpp `llama-server` with the embedded SmolLM2 GGUF, for tests marked `serving`.

`make test-serving` builds the binary once per machine (scripts/build_llama_server.sh) and passes
its path in LLAMA_SERVER; the server starts on 127.0.0.1 on a free port and always stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from stars_plugins.models import embedded_policy_file

pytestmark = pytest.mark.serving

# One thread: on a machine shared with other work, llama.cpp's spinning worker threads slow down
# badly when they do not each get a core (measured: 0.6 tok/s with -t 2 under load, 37 with -t 1).
THREADS = os.environ.get("LLAMA_SERVER_THREADS", "1")
DEFAULT_BINARY = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "stars-plugins/llama-server-0.3.36/bin/llama-server"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One llama-server process: `start()` waits until it answers /health; `stop()` ends it."""

    def __init__(
        self, binary: Path, log_dir: Path, *, port: int | None = None, slots: int = 16, slot_context: int = 1024
    ):
        self.binary, self.log_dir = binary, log_dir
        self.port = port or free_port()
        self.slots, self.slot_context = slots, slot_context
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LlamaServer:
        log = open(self.log_dir / f"llama-server-{self.port}-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "-m",
                str(embedded_policy_file()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "-np",
                str(self.slots),
                "-c",
                str(self.slots * self.slot_context),
                "-t",
                THREADS,
                "--no-warmup",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}; see {log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama-server did not become ready in {timeout:g} s; see {log.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    binary = Path(os.environ.get("LLAMA_SERVER", DEFAULT_BINARY))
    if not binary.is_file():
        pytest.skip(f"llama-server not built at {binary}; run `make test-serving` (builds it once)")
    return binary


@pytest.fixture(scope="session")
def llama_server(llama_server_binary, tmp_path_factory):
    server = LlamaServer(llama_server_binary, tmp_path_factory.mktemp("llama-logs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_factory(llama_server_binary, tmp_path_factory):
    """Start extra servers (one slot, a server to kill); every one is stopped at the end."""
    started: list[LlamaServer] = []
    log_dir = tmp_path_factory.mktemp("llama-extra-logs")

    def start(**kwargs) -> LlamaServer:
        server = LlamaServer(llama_server_binary, log_dir, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()
