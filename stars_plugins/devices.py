"""Devices and dtypes as users name them: one reading for policies and reward models."""

from __future__ import annotations

import torch

from stars_plugins.errors import ConfigError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


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
