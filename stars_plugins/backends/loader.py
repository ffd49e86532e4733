"""Loading policies, once per process: every runtime and config naming the same model shares it.

The one place that picks a backend by the policy reference: a server URL (or a list of replica
URLs) loads a `RemotePolicy` (`backends/remote`), anything else an in-process `HFPolicy`
(`backends/hf`)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stars_plugins.backends.hf.gguf_cache import converted_folder, is_complete, save_converted
from stars_plugins.backends.hf.policy import HFPolicy
from stars_plugins.backends.remote.load import load_remote_policy
from stars_plugins.devices import resolve_device, resolve_dtype
from stars_plugins.model_source import ModelSource, is_server_url, load_error, policy_source
from stars_plugins.quiet import quiet_loading

_cache: dict[tuple[Any, ...], Any] = {}  # HFPolicy or RemotePolicy
_cache_lock = threading.Lock()
_key_locks: dict[tuple[Any, ...], threading.Lock] = {}


def load_policy(
    policy: str | os.PathLike[str] | Sequence[str] | None = None,
    *,
    policy_tokenizer: str | os.PathLike[str] | None = None,
    engine: str | None = None,
    api_key: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = None,
    device_map: str | dict[str, Any] | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> HFPolicy:
    """Load (or fetch from the process-wide cache) a causal LM by hub id, folder or GGUF file.

    `device_map` (e.g. "auto") shards the model over several GPUs through accelerate; then `device`
    is ignored. Remote code runs only with `trust_remote_code=True`.

    A server URL (`"http://host:8000/v1"`, or a list of replica URLs) loads a `RemotePolicy` on a
    serving engine (vLLM, SGLang, llama.cpp's server; `engine` is detected unless given);
    `policy_tokenizer` names the served model's tokenizer (hub id, folder or GGUF file).
    """
    if is_server_url(policy):
        return _remote_policy(policy, policy_tokenizer, engine, api_key)  # type: ignore[arg-type]
    source = policy_source(policy)
    target = resolve_device(device) if device_map is None else None
    torch_dtype = resolve_dtype(dtype, target or torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    key = (
        source.location,
        source.gguf_file,
        revision,
        str(torch_dtype),
        str(target),
        json.dumps(device_map, sort_keys=True, default=str),
        trust_remote_code,
        attn_implementation,
    )
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # two threads asking for the same model load it once
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        loaded = _load(source, torch_dtype, target, device_map, revision, trust_remote_code, attn_implementation)
        loaded.key = key
        with _cache_lock:
            _cache[key] = loaded
        return loaded


def _remote_policy(urls: str | Sequence[str], tokenizer: Any, engine: str | None, api_key: str | None) -> Any:
    url_list = (urls,) if isinstance(urls, str) else tuple(urls)
    secret = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None
    key = ("remote", url_list, os.fspath(tokenizer) if tokenizer is not None else None, engine, secret)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        loaded = load_remote_policy(list(url_list), tokenizer=tokenizer, engine=engine, api_key=api_key)
        loaded.key = key
        with _cache_lock:
            _cache[key] = loaded
        return loaded


def _load(
    source: ModelSource,
    dtype: torch.dtype | str,
    device: torch.device | None,
    device_map: Any,
    revision: str | None,
    trust_remote_code: bool,
    attn_implementation: str | None,
) -> HFPolicy:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {**source.pretrained_kwargs(), "trust_remote_code": trust_remote_code}
    if revision:
        common["revision"] = revision
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    if attn_implementation:
        model_kwargs["attn_implementation"] = attn_implementation
    # A local GGUF file is dequantized once per machine and read back from a transformers folder
    # afterwards (gguf_cache.py); sharded loads (`device_map`) read the GGUF file every time.
    gguf_path = Path(source.location) / source.gguf_file if source.gguf_file else None
    converted = None
    if gguf_path is not None and source.local and device_map is None and not revision:
        converted = converted_folder(gguf_path, dtype)
    location = source.location
    if is_complete(converted):
        location, common = str(converted), {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(location, **common)
            model = AutoModelForCausalLM.from_pretrained(location, **common, **model_kwargs)
    except OSError as exc:
        raise load_error(source, exc, what="policy") from exc
    if converted is not None and gguf_path is not None and location == source.location:
        save_converted(converted, model, tokenizer, gguf_path)
    if device_map is None and device is not None:
        model = model.to(device)
    model.requires_grad_(False)
    return HFPolicy(model, tokenizer, name=source.display_name)


def loaded_policies() -> list[HFPolicy]:
    """The policies currently held by the process-wide cache."""
    with _cache_lock:
        return list(_cache.values())


def clear_policy_cache() -> None:
    """Forget every cached policy (their memory is freed once nothing else references them)."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()
