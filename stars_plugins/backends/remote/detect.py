"""Which engine serves a URL, and connecting to it.

Engines tell themselves apart in `GET /v1/models`: each writes its own name into `owned_by`
(vLLM `"vllm"`, SGLang `"sglang"`, llama.cpp `"llamacpp"`). A server that lists no owner is
probed further: llama.cpp answers `GET /props`, SGLang `GET /get_model_info`, vLLM `GET /version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import EngineProtocol, ServerInfo, first_model
from stars_plugins.backends.remote.sglang import SGLangProtocol
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.backends.remote.vllm import VLLMProtocol, supports_token_ids
from stars_plugins.errors import ConfigError, ServingError, ServingUnavailableError

ENGINE_NAMES = ("vllm", "sglang", "llama.cpp")
_ALIASES = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llama.cpp": "llama.cpp",
    "llamacpp": "llama.cpp",
    "llama-cpp": "llama.cpp",
    "llama_cpp": "llama.cpp",
    "llama-server": "llama.cpp",
}
_OWNERS = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama.cpp"}
_PROBES = (("/props", "llama.cpp"), ("/get_model_info", "sglang"), ("/version", "vllm"))


@dataclass(frozen=True)
class Replica:
    """One reachable server: its root URL, its protocol, and what it said about itself."""

    url: str
    protocol: EngineProtocol
    info: ServerInfo

    @property
    def generate_url(self) -> str:
        return self.url + self.protocol.generate_path


def server_root(url: str) -> str:
    """`http://host:8000/v1/` -> `http://host:8000`: paths are added per engine."""
    root = url.strip().rstrip("/")
    return root.removesuffix("/v1").rstrip("/")


def engine_name(engine: str | None) -> str | None:
    if engine is None or engine == "auto":
        return None
    try:
        return _ALIASES[engine.lower()]
    except KeyError:
        raise ConfigError(
            f"engine={engine!r} is not supported; use one of {', '.join(ENGINE_NAMES)} (or leave it out to detect it)"
        ) from None


def connect(url: str, transport: HttpTransport, engine: str | None = None) -> Replica:
    """Reach the server at `url` before any work, find its engine (unless given) and model facts."""
    root = server_root(url)
    name = engine_name(engine)
    try:
        models = transport.get_json(root + "/v1/models", retries=1)
    except ServingUnavailableError as exc:
        raise ServingUnavailableError(f"cannot reach the policy server at {url}: {exc}", url=url) from exc
    except ServingError as exc:
        if exc.status in (401, 403):
            raise ServingError(
                f"the policy server at {url} refused the API key (HTTP {exc.status}); pass "
                "api_key=... or set STARS_ENGINE_API_KEY",
                url=url,
                status=exc.status,
            ) from exc
        models = None  # no model list: probe below
    if name is None:
        name = _owner(models) or _probe(root, transport, url)
    protocol: EngineProtocol
    if name == "vllm":
        protocol = VLLMProtocol(legacy_token_ids=not supports_token_ids(_vllm_version(root, transport)))
    elif name == "sglang":
        protocol = SGLangProtocol()
    else:
        protocol = LlamaCppProtocol()
    return Replica(root, protocol, protocol.server_info(models))


def _owner(models: Any) -> str | None:
    owner = first_model(models).get("owned_by")
    return _OWNERS.get(owner) if isinstance(owner, str) else None


def _probe(root: str, transport: HttpTransport, url: str) -> str:
    for path, name in _PROBES:
        try:
            transport.get_json(root + path, retries=0)
        except ServingError:
            continue
        return name
    raise ServingError(
        f"the server at {url} answers, but not like vLLM, SGLang or llama.cpp's server; pass "
        f"engine= one of {', '.join(ENGINE_NAMES)}",
        url=url,
    )


def _vllm_version(root: str, transport: HttpTransport) -> str | None:
    try:
        body = transport.get_json(root + "/version", retries=0)
    except ServingError:
        return None
    return body.get("version") if isinstance(body, dict) else None
