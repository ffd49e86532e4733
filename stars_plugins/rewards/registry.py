"""Built-in rewards registered by name, and `load_reward`, which resolves any reward reference."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from stars_plugins.devices import resolve_device, resolve_dtype
from stars_plugins.errors import ConfigError, ModelNotFoundError, UnknownRewardError
from stars_plugins.model_source import load_error, resolve_source
from stars_plugins.quiet import quiet_loading
from stars_plugins.rewards.base import CallableReward, RewardModel
from stars_plugins.rewards.causal import CausalLMReward, supports_prefix_cache
from stars_plugins.rewards.classifier import ClassifierReward


@dataclass(frozen=True)
class BuiltinReward:
    name: str
    factory: Callable[[], RewardModel]
    description: str


_builtins: dict[str, BuiltinReward] = {}
_loaded: dict[tuple[Any, ...], RewardModel] = {}
_lock = threading.Lock()

#: The reward used when none is named.
DEFAULT_REWARD = "harmless"

RewardSpec = str | os.PathLike[str] | RewardModel | Callable[..., Any] | None


def register_reward(
    name: str, factory: Callable[[], RewardModel], *, description: str = "", replace: bool = False
) -> None:
    """Make `factory()` available as `reward=name` everywhere (runtime, CLI, adapters)."""
    if name in _builtins and not replace:
        raise ValueError(f"a reward named {name!r} is already registered; pass replace=True to override it")
    _builtins[name] = BuiltinReward(name, factory, description)
    with _lock:
        _loaded.pop(("builtin", name), None)


def available_rewards() -> dict[str, str]:
    """Built-in reward names and what each one rewards."""
    return {name: entry.description for name, entry in sorted(_builtins.items())}


def load_reward(spec: RewardSpec = None, *, device: str | None = None, **classifier_options: Any) -> RewardModel:
    """Resolve a reward reference: a built-in name, a folder or hub id of a sequence classifier,
    a `RewardModel`, or a callable `(prompts, responses) -> scores`. Loaded models are cached."""
    if spec is None:
        spec = DEFAULT_REWARD
    if isinstance(spec, RewardModel):
        return spec
    if callable(spec) and not isinstance(spec, str | os.PathLike):
        return CallableReward(spec)
    if not isinstance(spec, str | os.PathLike):
        raise ConfigError(
            f"reward must be a built-in name ({', '.join(sorted(_builtins))}), a model folder or hub id, a "
            f"RewardModel or a function (prompts, responses) -> scores; got {type(spec).__name__}"
        )
    if isinstance(spec, str) and spec in _builtins:
        return _cached(("builtin", spec), _builtins[spec].factory)

    text = os.fspath(spec)
    key = ("classifier", text, device, tuple(sorted(classifier_options.items())))
    bare_name = "/" not in text and not os.path.exists(text)
    if bare_name and _close_builtin(text):  # a misspelt built-in name: say so instead of asking a hub
        raise unknown_reward_error(text)
    try:
        return _cached(key, lambda: load_classifier_reward(text, device=device, **classifier_options))
    except ModelNotFoundError as exc:
        if bare_name:
            raise unknown_reward_error(text, f"Nor is it a loadable model folder or hub id ({exc}).") from exc
        raise


def unknown_reward_error(text: str, detail: str = "") -> UnknownRewardError:
    """The one wording for a reward name that is neither built in nor loadable (the runtime, the
    adapters' early check and the CLI all raise this)."""
    close = _close_builtin(text)
    hint = f"; did you mean {close!r}?" if close else "."
    return UnknownRewardError(
        f"unknown reward {text!r}: not a built-in reward (available: {', '.join(sorted(_builtins))}){hint} "
        + (f"{detail} " if detail else "")
        + "Pass a built-in name, a reward classifier's folder or hub id ('org/name'), a RewardModel, or a "
        "function (prompts, responses) -> scores."
    )


def _close_builtin(text: str) -> str | None:
    close = difflib.get_close_matches(text, list(_builtins), n=1, cutoff=0.75)
    return close[0] if close else None


def _cached(key: tuple[Any, ...], factory: Callable[[], RewardModel]) -> RewardModel:
    with _lock:
        if key in _loaded:
            return _loaded[key]
    reward = factory()
    with _lock:
        return _loaded.setdefault(key, reward)


def clear_reward_cache() -> None:
    with _lock:
        _loaded.clear()


def load_classifier_reward(
    spec: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    label: int | str | None = None,
    trust_remote_code: bool = False,
) -> ClassifierReward:
    """A sequence classifier by folder or hub id: a `CausalLMReward` (with a per-request prefix cache)
    over a decoder that supports it, else a `ClassifierReward`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_source(spec, what="reward model")
    target = resolve_device(device)
    common = {**source.pretrained_kwargs(), "trust_remote_code": trust_remote_code}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(source.location, **common)
            model = AutoModelForSequenceClassification.from_pretrained(
                source.location, dtype=resolve_dtype(dtype, target), **common
            )
    except OSError as exc:
        raise load_error(source, exc, what="reward model") from exc
    model = model.to(target).requires_grad_(False)
    reward_class = CausalLMReward if supports_prefix_cache(model) else ClassifierReward
    return reward_class(model, tokenizer, name=source.display_name, label=label)
