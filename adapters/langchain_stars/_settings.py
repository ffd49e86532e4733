"""Per-chain STARS settings shared by `StarsLLM` and `ChatStars`, and their translation to a `StarsConfig`.

The adapter holds settings only, never a loaded model: the policy comes from the runtime's
process-wide cache (`StarsRuntime.from_pretrained`), so any number of chains with different
settings share one loaded policy, and changing a setting never reloads anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from stars_plugins import (
    ConfigError,
    GenerationResult,
    RewardModel,
    StarsConfig,
    StarsRuntime,
    UnknownRewardError,
    available_rewards,
    load_reward,
)
from stars_plugins.models import DEFAULT_POLICY_ALIASES, SMOLLM2_GGUF

#: Adapter settings whose `StarsConfig` field has another name. Everything else keeps its name.
RENAMED = {"max_tokens": "max_new_tokens"}

#: Settings that become the `StarsConfig` of a call (adapter names), in a stable order.
SETTING_NAMES: tuple[str, ...] = (
    "strategy",
    "horizon",
    "num_candidates",
    "max_tokens",
    "max_rejections",
    "alpha",
    "beta",
    "acceptance",
    "target_reward",
    "calibration_quantile",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "stop",
    "apply_chat_template",
    "system_prompt",
    "truncate_prompt",
    "entropy_threshold",
    "min_segment_tokens",
    "max_segment_tokens",
)

#: What a call may override with keyword arguments (`llm.invoke(p, horizon=8)`, `.bind(...)`):
#: every setting, under its adapter name or its `StarsConfig` name, and the reward.
CALL_KWARGS: frozenset[str] = frozenset({*SETTING_NAMES, *StarsConfig.model_fields, "reward"})

#: Name shown for the embedded policy (what `StarsRuntime.model_name` reports for it).
EMBEDDED_MODEL_NAME = SMOLLM2_GGUF.removesuffix(".gguf")


def _core(name: str) -> str:
    return RENAMED.get(name, name)


def _default(name: str) -> Any:
    return StarsConfig.model_fields[_core(name)].default


def _describe(name: str) -> str:
    return StarsConfig.model_fields[_core(name)].description or ""


def build_config(settings: Mapping[str, Any]) -> StarsConfig:
    """A validated `StarsConfig` from adapter settings; invalid values raise `ConfigError`
    naming the adapter's setting (`max_tokens`, not `max_new_tokens`) and its allowed range."""
    core: dict[str, Any] = {}
    for name, value in settings.items():
        core[_core(name)] = value
    try:
        return StarsConfig(**core)
    except ConfigError as exc:
        raise ConfigError(re.sub(r"\bmax_new_tokens\b", "max_tokens", str(exc))) from None


def check_reward(spec: Any) -> None:
    """Fail now, with the list of built-in rewards, for a reward name that cannot load later.

    Accepted: None (the default reward), a built-in name, a classifier folder or hub id
    ("org/name"), a `RewardModel`, or a function `(prompts, responses) -> scores`.
    """
    if spec is None or isinstance(spec, RewardModel):
        return
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        builtins = available_rewards()
        looks_like_model = "/" in spec or os.sep in spec or os.path.exists(spec)
        if spec in builtins or looks_like_model:
            return
        listing = "; ".join(f"{name} ({about})" if about else name for name, about in builtins.items())
        raise UnknownRewardError(
            f"unknown reward {spec!r}. Built-in rewards: {listing}. Pass one of these names, a reward "
            "classifier's folder or hub id ('org/name'), a RewardModel, or a function "
            "(prompts, responses) -> scores."
        )
    if callable(spec):
        return
    raise ConfigError(
        f"reward must be a built-in reward name, a model folder or hub id, a RewardModel or a function "
        f"(prompts, responses) -> scores; got {type(spec).__name__}"
    )


def reward_label(spec: Any) -> str | None:
    """A short, JSON-friendly name for a reward reference (for tracing and `llm_output`)."""
    if spec is None:
        return None
    if isinstance(spec, str | os.PathLike):
        return os.fspath(spec)
    return str(getattr(spec, "name", None) or getattr(spec, "__qualname__", None) or type(spec).__name__)


@dataclass(frozen=True)
class PreparedCall:
    """What one LangChain call runs with: the shared runtime, a validated config, and a reward
    override (None: the chain's own reward, which the runtime already holds)."""

    runtime: StarsRuntime
    config: StarsConfig
    reward: Any
    reward_name: str


class StarsSettings(BaseModel):
    """Fields shared by `StarsLLM` and `ChatStars`: which models to use and how to decode.

    Defaults are the runtime's (`StarsConfig`) defaults. Every setting except the model choice
    (`policy`, `dtype`, `device`) can also be given per call as a keyword argument.
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True
    )

    # --- models (loaded once per process, shared by every chain naming them) ----------------------
    model_name: str | None = Field(
        None,
        validation_alias=AliasChoices("model_name", "policy", "model"),
        description="The policy: hub id, folder or .gguf file (also accepted as `policy=` or `model=`). "
        "None: the embedded SmolLM2-135M-Instruct.",
    )
    reward: Any = Field(
        None,
        description="Reward model: a built-in name (see stars_plugins.available_rewards()), a classifier "
        "folder or hub id, a RewardModel, or a function (prompts, responses) -> scores. None: the default.",
    )
    dtype: str = Field("auto", description="Policy dtype: auto, float32, float16 or bfloat16.")
    device: str | None = Field(None, description="Policy device, e.g. 'cpu' or 'cuda:0'. None: GPU if any.")

    # --- decoding (a StarsConfig per call; changing these never reloads a model) -----------------
    strategy: str = Field(_default("strategy"), description=_describe("strategy"))
    horizon: int = Field(_default("horizon"), description=_describe("horizon"))
    num_candidates: int = Field(_default("num_candidates"), description=_describe("num_candidates"))
    max_tokens: int = Field(_default("max_tokens"), description=_describe("max_tokens"))
    max_rejections: int = Field(_default("max_rejections"), description=_describe("max_rejections"))
    alpha: float = Field(_default("alpha"), description=_describe("alpha"))
    beta: float = Field(_default("beta"), description=_describe("beta"))
    acceptance: str = Field(_default("acceptance"), description=_describe("acceptance"))
    target_reward: float | None = Field(_default("target_reward"), description=_describe("target_reward"))
    calibration_quantile: float = Field(
        _default("calibration_quantile"), description=_describe("calibration_quantile")
    )
    temperature: float = Field(_default("temperature"), description=_describe("temperature"))
    top_k: int = Field(_default("top_k"), description=_describe("top_k"))
    top_p: float = Field(_default("top_p"), description=_describe("top_p"))
    seed: int | None = Field(_default("seed"), description=_describe("seed"))
    stop: list[str] | None = Field(
        None, description="Default stop strings; a call's `stop` argument replaces them."
    )
    apply_chat_template: bool = Field(
        _default("apply_chat_template"), description=_describe("apply_chat_template")
    )
    system_prompt: str | None = Field(_default("system_prompt"), description=_describe("system_prompt"))
    truncate_prompt: bool = Field(_default("truncate_prompt"), description=_describe("truncate_prompt"))
    entropy_threshold: float = Field(_default("entropy_threshold"), description=_describe("entropy_threshold"))
    min_segment_tokens: int = Field(_default("min_segment_tokens"), description=_describe("min_segment_tokens"))
    max_segment_tokens: int = Field(_default("max_segment_tokens"), description=_describe("max_segment_tokens"))

    _runtime_slot: tuple[tuple[Any, ...], StarsRuntime] | None = PrivateAttr(None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Fail at construction, with the runtime's own messages, not at the first call.
        check_reward(self.reward)
        self.stars_config()

    @field_validator("model_name", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    # ------------------------------------------------------------------ runtime
    @property
    def runtime(self) -> StarsRuntime:
        """The `StarsRuntime` this chain runs on, loaded on first use.

        The policy and reward come from process-wide caches: every chain naming the same policy
        (and dtype/device) gets the same loaded model object.
        """
        key = (self.model_name, self.dtype, self.device, _reward_key(self.reward))
        slot = self._runtime_slot
        if slot is not None and slot[0] == key:
            return slot[1]
        runtime = StarsRuntime.from_pretrained(self.model_name, self.reward, dtype=self.dtype, device=self.device)
        self._runtime_slot = (key, runtime)
        return runtime

    @property
    def runtime_loaded(self) -> bool:
        """Whether `runtime` is resolved already (so using it cannot block on a model load)."""
        slot = self._runtime_slot
        return slot is not None and slot[0] == (self.model_name, self.dtype, self.device, _reward_key(self.reward))

    # ------------------------------------------------------------------ settings -> StarsConfig
    def settings(self) -> dict[str, Any]:
        """The decoding settings of this chain, by adapter name."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def stars_config(self, stop: list[str] | None = None, **overrides: Any) -> StarsConfig:
        """The validated `StarsConfig` for a call: fields, then `stop` (if given), then overrides."""
        values = self.settings()
        if stop is not None:
            values["stop"] = list(stop)
        for name, value in overrides.items():
            values[_adapter_name(name)] = value
        return build_config(values)

    def prepare_call(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> PreparedCall:
        """Translate a LangChain call (stop words, per-call keyword arguments) into runtime terms.

        Unknown keyword arguments raise `ConfigError` instead of being silently ignored.
        """
        unknown = sorted(set(kwargs) - CALL_KWARGS)
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} got unknown keyword argument(s) {', '.join(map(repr, unknown))}. "
                f"Per-call settings: reward, {', '.join(SETTING_NAMES)}."
            )
        overrides = dict(kwargs)
        reward = overrides.pop("reward", None)
        if reward is not None:
            check_reward(reward)
        if "stop" in overrides:  # `invoke(p, stop=...)` arrives as the stop argument; this is the rare kwarg
            stop = overrides.pop("stop")
        config = self.stars_config(stop, **overrides)
        runtime = self.runtime
        if reward is not None:
            load_reward(reward, device=str(runtime.policy.device))  # load (cached) here, not on an event loop
        name = reward_label(reward) or reward_label(self.reward) or runtime.reward.name
        return PreparedCall(runtime, config, reward, name)

    # ------------------------------------------------------------------ tracing
    @property
    def display_model_name(self) -> str:
        """The policy's name for tracing, known without loading it."""
        if self.model_name is None or self.model_name.lower() in DEFAULT_POLICY_ALIASES:
            return EMBEDDED_MODEL_NAME
        return self.model_name

    def identifying_settings(self) -> dict[str, Any]:
        """Everything that makes two chains generate differently, JSON-friendly."""
        return {
            "model_name": self.display_model_name,
            "reward": reward_label(self.reward),
            "dtype": self.dtype,
            "device": self.device,
            **self.settings(),
        }

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self.identifying_settings()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        """LangSmith's params of the language model class, with the policy's name and the stop strings."""
        params = super()._get_ls_params(stop=stop, **kwargs)  # type: ignore[misc]  # BaseLLM / BaseChatModel
        params.setdefault("ls_model_name", self.display_model_name)
        if "ls_stop" not in params and self.stop:
            params["ls_stop"] = list(self.stop)
        return params

    def configurable_settings(self, *names: str) -> Any:
        """`configurable_fields` for the named settings (default: every setting and the reward),
        each with its own name as id: `llm.configurable_settings().with_config(configurable={"horizon": 8})`."""
        from langchain_core.runnables import ConfigurableField

        chosen = names or ("reward", *SETTING_NAMES)
        unknown = [n for n in chosen if n not in SETTING_NAMES and n != "reward"]
        if unknown:
            raise ConfigError(
                f"not a per-chain setting: {', '.join(unknown)}; settings: reward, {', '.join(SETTING_NAMES)}"
            )
        fields = {
            name: ConfigurableField(id=name, name=name, description=type(self).model_fields[name].description)
            for name in chosen
        }
        return self.configurable_fields(**fields)  # type: ignore[attr-defined]


def _adapter_name(name: str) -> str:
    for adapter, core in RENAMED.items():
        if name == core:
            return adapter
    return name


def _reward_key(spec: Any) -> Any:
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, os.PathLike):
        return os.fspath(spec)
    return ("object", id(spec))


# ---------------------------------------------------------------------- results -> LangChain
def generation_info(result: GenerationResult) -> dict[str, Any]:
    """The STARS facts of one generation, as LangChain's `generation_info`."""
    return {
        "finish_reason": result.finish_reason,
        "reward": result.reward,
        "strategy": result.strategy,
        "stats": result.stats.as_dict(),
    }


def completion_tokens(result: GenerationResult) -> int:
    return len(result.token_ids)


def token_usage(results: list[GenerationResult]) -> dict[str, int]:
    prompt = sum(r.stats.prompt_tokens for r in results)
    completion = sum(completion_tokens(r) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
