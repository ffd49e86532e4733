"""What `StarsLLM` and `ChatStars` share: settings derived from `StarsConfig` by the core, and the
LangChain call hooks, written once over the core's call surface (`stars_plugins.calls`). The adapter
holds settings only; the policy comes from the runtime's process-wide cache."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, field_validator

from stars_plugins import ConfigError, StarsConfig, StarsRuntime, calls

_ConfigFields = calls.settings_model("StarsConfigFields", renames={"max_new_tokens": "max_tokens"})

#: Adapter names of the settings that make up a call's `StarsConfig`, in `StarsConfig` order.
SETTING_NAMES: tuple[str, ...] = tuple(_ConfigFields.renames.get(n, n) for n in StarsConfig.model_fields)
#: What a call may override (`llm.invoke(p, horizon=8)`, `.bind(...)`): every setting, `max_tokens`, the reward.
CALL_KWARGS: frozenset[str] = calls.CALL_SETTINGS


class StarsSettings(_ConfigFields):
    """Fields and call hooks shared by `StarsLLM` and `ChatStars`; defaults are `StarsConfig`'s."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True
    )

    model_name: str | None = Field(
        None,
        validation_alias=AliasChoices("model_name", "policy", "model"),
        description="Policy: hub id, folder or .gguf file; None: the embedded one.",
    )
    reward: Any = Field(
        None,
        description="Reward: a built-in name (stars_plugins.available_rewards()), a "
        "classifier folder or hub id, a RewardModel, or a function (prompts, responses) -> scores.",
    )
    policy_tokenizer: str | None = Field(None, description="Tokenizer (hub id, folder, .gguf) of a served policy.")
    dtype: str = Field("auto", description="Policy dtype: auto, float32, float16 or bfloat16.")
    device: str | None = Field(None, description="Policy device, e.g. 'cpu' or 'cuda:0'. None: GPU if any.")
    streaming: bool = Field(False, description="Stream one-prompt `invoke` calls internally (callbacks per segment).")

    _slot: calls.RuntimeSlot = PrivateAttr(default_factory=calls.RuntimeSlot)
    _given_runtime: StarsRuntime | None = PrivateAttr(default=None)

    def __init__(self, *, runtime: StarsRuntime | None = None, **data: Any) -> None:
        super().__init__(**data)
        calls.check_reward(self.reward)  # a misspelt reward name fails now, not at the first call
        if runtime is not None and self.model_name is not None:
            raise ConfigError("pass either runtime= or model_name=, not both (a runtime already holds its policy)")
        self._given_runtime = runtime

    @field_validator("model_name", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def runtime(self) -> StarsRuntime:
        """The `StarsRuntime` this chain runs on: `runtime=` if given (its policy; `reward` still
        applies), else loaded on first use from the process-wide caches."""
        return self._slot.get(
            self.model_name,
            self.reward,
            dtype=self.dtype,
            device=self.device,
            base=self._given_runtime,
            policy_tokenizer=self.policy_tokenizer,
        )

    def stars_config(self, **overrides: Any) -> StarsConfig:
        """The validated `StarsConfig` of a call with these per-call overrides."""
        return calls.resolve_config(self.config_settings(), overrides, owner=type(self).__name__)[0]

    def prepare_call(self, stop: list[str] | None, kwargs: dict[str, Any]) -> calls.Call:
        """A LangChain call in runtime terms; unknown keyword arguments raise `ConfigError`."""
        overrides = {name: value for name, value in kwargs.items() if name != "stream"}  # LangChain's own switch
        if stop is not None:
            overrides["stop"] = stop
        return calls.prepare_call(self.runtime, self.config_settings(), overrides, owner=type(self).__name__)

    # LangChain's hooks, once for both classes. Subclasses define `_prompts` (what `_generate`
    # receives -> runtime prompts), `_prompt` (what `_stream` receives), `_output` and `_chunk`.
    def _generate(self, inputs: Any, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> Any:
        call, prompts = self.prepare_call(stop, kwargs), self._prompts(inputs)
        if self.streaming and len(prompts) == 1:  # stream internally: callbacks see every segment
            *_, (last, _chunk) = self._chunks(call.stream(prompts[0]), call, run_manager)
            return self._output([last.result], call)
        return self._output(call.generate(prompts), call)

    async def _agenerate(
        self, inputs: Any, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        call, prompts = await calls.off_loop(self.prepare_call, stop, kwargs), self._prompts(inputs)
        if self.streaming and len(prompts) == 1:
            pairs = [pair async for pair in self._achunks(call.astream(prompts[0]), call, run_manager)]
            return self._output([pairs[-1][0].result], call)
        return self._output(await call.agenerate(prompts), call)

    def _stream(self, input: Any, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> Any:
        call = self.prepare_call(stop, kwargs)
        for _delta, chunk in self._chunks(call.stream(self._prompt(input)), call, run_manager):
            yield chunk

    async def _astream(self, input: Any, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> Any:
        call = await calls.off_loop(self.prepare_call, stop, kwargs)
        async for _delta, chunk in self._achunks(call.astream(self._prompt(input)), call, run_manager):
            yield chunk

    def _chunks(self, deltas: Iterator[calls.Delta], call: calls.Call, run_manager: Any) -> Iterator[Any]:
        for delta in deltas:
            chunk = self._chunk(delta, call)  # type: ignore[attr-defined]
            if run_manager and delta.text:
                run_manager.on_llm_new_token(delta.text, chunk=chunk)
            if delta.text or delta.result or delta.tool_calls:
                yield delta, chunk

    async def _achunks(self, deltas: AsyncIterator[calls.Delta], call: calls.Call, run_manager: Any) -> Any:
        async for delta in deltas:
            chunk = self._chunk(delta, call)  # type: ignore[attr-defined]
            if run_manager and delta.text:
                await run_manager.on_llm_new_token(delta.text, chunk=chunk)
            if delta.text or delta.result or delta.tool_calls:
                yield delta, chunk

    def get_token_ids(self, text: str) -> list[int]:
        """The text in the policy's own tokens (offline; LangChain's default needs a GPT-2 download)."""
        if self.custom_get_token_ids is not None:  # type: ignore[attr-defined]
            return super().get_token_ids(text)  # type: ignore[misc]
        return calls.text_token_ids(self.runtime, text)

    # ------------------------------------------------------------------ tracing
    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Everything that makes two chains generate differently (LangChain's cache key, too)."""
        models = {"model_name": calls.policy_label(self.model_name), "reward": calls.reward_label(self.reward)}
        return {**models, "dtype": self.dtype, "device": self.device, **self.field_settings()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)  # type: ignore[misc]  # BaseLLM / BaseChatModel
        params.setdefault("ls_model_name", calls.policy_label(self.model_name))
        if "ls_stop" not in params and self.stop:
            params["ls_stop"] = list(self.stop)
        return params

    def configurable_settings(self, *names: str) -> Any:
        """`configurable_fields` for the named settings (default: every setting and the reward),
        each with its own name as id: `llm.configurable_settings().with_config(configurable={"horizon": 8})`."""
        from langchain_core.runnables import ConfigurableField

        chosen, settings = names or ("reward", *SETTING_NAMES), {"reward", *SETTING_NAMES}
        if unknown := set(chosen) - settings:
            raise calls.unknown_names_error(type(self).__name__, unknown, "per-chain setting(s)", settings)
        description = type(self).model_fields
        fields = {n: ConfigurableField(id=n, name=n, description=description[n].description) for n in chosen}
        return self.configurable_fields(**fields)  # type: ignore[attr-defined]
