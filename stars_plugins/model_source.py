"""Where a model comes from: a local folder, a local GGUF file, or a Hugging Face id.

A local path is always loaded with `local_files_only=True`, so nothing contacts a hub when a path
is given; a path that does not exist fails here, naming it, instead of being sent to the hub as an id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stars_plugins.errors import ConfigError, ModelNotFoundError
from stars_plugins.models import DEFAULT_POLICY_ALIASES, embedded_policy_file


@dataclass(frozen=True)
class ModelSource:
    """Arguments for `from_pretrained`: `location` is a folder or a hub id."""

    location: str
    gguf_file: str | None = None
    local: bool = True

    def pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        if self.local or offline():
            kwargs["local_files_only"] = True
        return kwargs

    @property
    def display_name(self) -> str:
        return self.gguf_file.removesuffix(".gguf") if self.gguf_file else self.location


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", "./", "../", "~", "\\"))
        or spec.endswith(".gguf")
        or spec.count("/") > 1
        or (os.name == "nt" and ":" in spec)
    )


def resolve_source(spec: str | os.PathLike[str], *, what: str = "model") -> ModelSource:
    """Turn a user's model reference into a `ModelSource`, failing clearly on a missing path."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"{what} {text!r} is a file but not a .gguf file; pass its folder instead")
        return ModelSource(str(path.parent.resolve()), gguf_file=path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(str(path.resolve()))
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(str(path.resolve()), gguf_file=ggufs[0])
        if len(ggufs) > 1:
            raise ConfigError(
                f"{what} folder {text!r} holds several GGUF files ({', '.join(ggufs)}); pass the file's path"
            )
        raise ModelNotFoundError(f"{what} folder {text!r} has neither a config.json nor a .gguf file", path=str(path))
    if _looks_like_path(text):
        raise ModelNotFoundError(f"{what} path {text!r} does not exist", path=text)
    return ModelSource(text, local=False)


def load_error(source: ModelSource, exc: Exception, *, what: str) -> ModelNotFoundError:
    """Explain a failed `from_pretrained` of a hub id (usually: offline, or a typo)."""
    hint = (
        " HF_HUB_OFFLINE is set, so only models already in the local Hugging Face cache can load;"
        " pass a local folder instead."
        if offline()
        else " Check the id, or pass a local folder."
    )
    return ModelNotFoundError(
        f"could not load {what} {source.location!r}: {type(exc).__name__}: {exc}.{hint}",
        path=source.location,
    )


def policy_source(policy: str | os.PathLike[str] | None) -> ModelSource:
    if policy is not None and not isinstance(policy, str | os.PathLike):
        raise ConfigError(f"policy must be a hub id, a folder or a .gguf file path, got {type(policy).__name__}")
    if policy is None or (isinstance(policy, str) and policy.lower() in DEFAULT_POLICY_ALIASES):
        return resolve_source(embedded_policy_file(), what="policy")
    return resolve_source(policy, what="policy")


def is_server_url(policy: Any) -> bool:
    """Whether `policy` names a serving engine (an http(s) URL, or a list of them)."""
    if isinstance(policy, str):
        return policy.startswith(("http://", "https://"))
    if isinstance(policy, list | tuple) and policy:
        return all(isinstance(p, str) and p.startswith(("http://", "https://")) for p in policy)
    return False
