"""`load_remote_policy`: reach the servers, detect the engine, load the served model's tokenizer."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from stars_plugins.backends.remote.batch import RemotePolicy
from stars_plugins.backends.remote.detect import Replica, connect
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.errors import ConfigError, ModelNotFoundError

_DEFAULT_CONTEXT = 2048
_tokenizers: dict[tuple[str, str | None], Any] = {}
_tokenizers_lock = threading.Lock()


def load_remote_policy(
    urls: str | Sequence[str],
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    engine: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    retries: int = 3,
    max_concurrency: int = 32,
) -> RemotePolicy:
    """Connect to one server, or to several replicas of one model (rows are spread across them).

    Every server is reached now, so a wrong URL fails here, naming it, before any work.
    `tokenizer` (hub id, folder or GGUF file of the served model) renders prompts and decodes text;
    without it the model id the server reports is tried as a local folder or cached hub id.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ConfigError("pass at least one server URL")
    transport = HttpTransport(api_key=api_key, timeout=timeout, retries=retries, max_connections=max_concurrency)
    try:
        replicas = [connect(url, transport, engine) for url in url_list]
        engines = {r.protocol.name for r in replicas}
        if len(engines) > 1:
            raise ConfigError(
                f"the servers {url_list} run different engines ({', '.join(sorted(engines))}); "
                "replicas must serve the same model with the same engine"
            )
        hf_tokenizer, eos_ids = _load_tokenizer(tokenizer, replicas)
    except BaseException:
        transport.close()
        raise
    windows = [r.info.context_window for r in replicas if r.info.context_window]
    limit = getattr(hf_tokenizer, "model_max_length", None)
    context = min(windows) if windows else (limit if isinstance(limit, int) and 0 < limit < 10**7 else _DEFAULT_CONTEXT)
    pad = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    model = replicas[0].info.model or "model"
    if model.endswith(".gguf"):  # llama-server names its model by the file's path
        model = os.path.basename(model)
    return RemotePolicy(
        replicas,
        transport,
        hf_tokenizer,
        name=f"{replicas[0].protocol.name}:{model}",
        eos_token_ids=eos_ids,
        pad_token_id=int(pad),
        context_window=int(context),
        max_concurrency=max_concurrency,
    )


def _load_tokenizer(spec: str | os.PathLike[str] | None, replicas: Sequence[Replica]) -> tuple[Any, tuple[int, ...]]:
    from transformers import AutoTokenizer, GenerationConfig

    from stars_plugins.model_source import load_error, policy_source

    if spec is None:
        served = replicas[0].info.model
        if not served:
            raise ConfigError(
                f"the server at {replicas[0].url} does not name its model; pass policy_tokenizer= "
                "(hub id, folder or GGUF file of the served model)"
            )
        spec = served
    try:
        source = policy_source(spec)
    except ModelNotFoundError as exc:
        raise ConfigError(
            f"cannot find the tokenizer {os.fspath(spec)!r} of the served model ({exc}); pass "
            "policy_tokenizer= a hub id, folder or GGUF file of the model the server runs"
        ) from exc
    key = (source.location, source.gguf_file)
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(key)
    if tokenizer is None:  # converting a GGUF vocabulary takes tens of seconds: once per process
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.location, **source.pretrained_kwargs())
        except (OSError, ValueError) as exc:
            raise load_error(source, exc, what="policy tokenizer") from exc
        with _tokenizers_lock:
            tokenizer = _tokenizers.setdefault(key, tokenizer)
    ids: set[int] = set()
    values: list[Any] = [tokenizer.eos_token_id]
    if not source.gguf_file:
        with contextlib.suppress(OSError, ValueError):  # GGUF files and some folders have none
            values.append(GenerationConfig.from_pretrained(source.location, **source.pretrained_kwargs()).eos_token_id)
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return tokenizer, tuple(sorted(ids))
