"""Loading policies, once per process: every runtime and config naming the same model shares it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.errors import ConfigError
from stars_plugins.model_source import ModelSource, load_error, resolve_source
from stars_plugins.models import DEFAULT_POLICY_ALIASES, embedded_policy_file
from stars_plugins.policy.hf import HFPolicy
from stars_plugins.quiet import quiet_loading

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}

_cache: dict[tuple[Any, ...], Any] = {}  # HFPolicy or RemotePolicy
_cache_lock = threading.Lock()
_key_locks: dict[tuple[Any, ...], threading.Lock] = {}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device | int):
        raise ConfigError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device; use auto, cpu, cuda, cuda:1, mps ...") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for, but no CUDA device is available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | str:
    """'auto' keeps the checkpoint's dtype on GPU; on CPU it means float32 (half precision is slow there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return "auto" if device.type != "cpu" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ConfigError(f"dtype={dtype!r} is not supported; use auto, {', '.join(_DTYPES)}") from None


def policy_source(policy: str | os.PathLike[str] | None) -> ModelSource:
    if policy is not None and not isinstance(policy, str | os.PathLike):
        raise ConfigError(f"policy must be a hub id, a folder or a .gguf file path, got {type(policy).__name__}")
    if policy is None or (isinstance(policy, str) and policy.lower() in DEFAULT_POLICY_ALIASES):
        return resolve_source(embedded_policy_file(), what="policy")
    return resolve_source(policy, what="policy")


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


def is_server_url(policy: Any) -> bool:
    """Whether `policy` names a serving engine (an http(s) URL, or a list of them)."""
    from stars_plugins.engines.detect import is_remote  # imported late: engines import the decoding loop

    return is_remote(policy)


def _remote_policy(urls: str | Sequence[str], tokenizer: Any, engine: str | None, api_key: str | None) -> Any:
    from stars_plugins.engines import load_remote_policy

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
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(source.location, **common)
            model = AutoModelForCausalLM.from_pretrained(source.location, **common, **model_kwargs)
    except OSError as exc:
        raise load_error(source, exc, what="policy") from exc
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
