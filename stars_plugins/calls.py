"""The one request path: every surface (both framework adapters, `stars serve`, the `stars`
command) builds its calls here, so that each of them only translates.

- `prepare_call` / `resolve_config`: settings + per-call overrides -> one `StarsConfig`, validated
  once, and the reward reference checked once and resolved once;
- `Call`: one resolved call that generates and streams; `stream_deltas` / `astream_deltas` turn
  accepted segments into text deltas (the server's SSE chunks included), with one close/cancel
  behaviour (leaving early stops the request at its next round);
- `token_usage`: the one usage formula; `result_facts` / `segment_facts`: the STARS facts, JSON-ready;
- `settings_model`: an adapter base class with one field per `StarsConfig` field (derived from
  `StarsConfig.model_fields`, so a new setting reaches every framework), validated by `StarsConfig`.
- `check_reward`, `reward_label`, `RuntimeSlot`: a reward reference checked early, named without
  loading; an adapter object's runtime, loaded on first use from the process-wide caches;
- `text_token_ids` / `prompt_token_ids`: token counts with the policy's own tokenizer.

Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, Field, ValidationError, create_model

from stars_plugins.config import StarsConfig
from stars_plugins.errors import ConfigError, UnknownRewardError
from stars_plugins.models import DEFAULT_POLICY_ALIASES, SMOLLM2_GGUF
from stars_plugins.prompts import PromptInput
from stars_plugins.results import GenerationResult, Segment
from stars_plugins.rewards import RewardModel, available_rewards, load_reward
from stars_plugins.rewards.base import reward_identity
from stars_plugins.rewards.registry import RewardSpec, unknown_reward_error
from stars_plugins.runtime import AsyncGenerationStream, GenerationStream, StarsRuntime
from stars_plugins.streams import AsyncClosingStream, ClosingStream
from stars_plugins.tools.outcomes import InvalidToolCall, ParsedToolOutput, ToolCall
from stars_plugins.tools.parsers import parse_tool_output

#: Other names of `StarsConfig` fields, accepted wherever settings are (`max_tokens=64`).
ALIASES: dict[str, str] = {"max_tokens": "max_new_tokens"}

#: Keyword arguments a call accepts: every `StarsConfig` field, its aliases, and the reward.
CALL_SETTINGS: frozenset[str] = frozenset({*StarsConfig.model_fields, *ALIASES, "reward"})


# ---------------------------------------------------------------------- settings
def config_fields(renames: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pydantic field definitions mirroring every `StarsConfig` field (type, default, description),
    for `pydantic.create_model`. `renames` maps a `StarsConfig` name to the framework's field name."""
    renames = renames or {}
    return {
        renames.get(name, name): (info.annotation, Field(info.default, description=info.description))
        for name, info in StarsConfig.model_fields.items()
    }


class ConfigSettings(BaseModel):
    """Base of `settings_model` classes: settings are validated by `StarsConfig` before the
    framework sees them, so invalid values raise the core's `ConfigError` with its exact text."""

    renames: ClassVar[dict[str, str]] = {}  # StarsConfig name -> field name

    def __init__(self, **data: Any) -> None:
        unknown = set(data) - accepted_names(type(self))
        if unknown:
            raise unknown_names_error(type(self).__name__, unknown, "setting(s)", accepted_names(type(self)))
        given = {name: data.pop(name) for name in list(data) if canonical_name(name) in StarsConfig.model_fields}
        config = StarsConfig(**canonical(given))
        data.update({self.renames.get(name, name): getattr(config, name) for name in canonical(given)})
        try:
            super().__init__(**data)
        except ValidationError as exc:
            parts = ["{}: {}".format(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
            raise ConfigError(f"invalid {type(self).__name__} settings: {'; '.join(parts)}") from None

    def config_settings(self) -> dict[str, Any]:
        """This object's decoding settings, by `StarsConfig` name."""
        return {name: getattr(self, self.renames.get(name, name)) for name in StarsConfig.model_fields}

    def field_settings(self) -> dict[str, Any]:
        """This object's decoding settings, by field name (for tracing)."""
        return {self.renames.get(name, name): value for name, value in self.config_settings().items()}


def settings_model(name: str, renames: Mapping[str, str] | None = None) -> type[ConfigSettings]:
    """A pydantic base class with every `StarsConfig` setting as a field, for an adapter class to
    inherit next to its framework's base: `class MyLLM(settings_model("MyFields"), FrameworkLLM)`."""
    model = create_model(name, __base__=ConfigSettings, **config_fields(renames))
    model.renames = dict(renames or {})
    return model


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def canonical(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` by `StarsConfig` name; an alias and its field given together is an error."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        core = canonical_name(name)
        if core in out:
            alias = next(a for a, c in ALIASES.items() if c == core)
            raise ConfigError(f"pass {alias} or {core}, not both ({alias} is an alias of {core})")
        out[core] = value
    return out


def accepted_names(model: type[ConfigSettings]) -> set[str]:
    """What a settings class accepts: field names, their aliases, and every `StarsConfig` name."""
    names = {*ALIASES, *StarsConfig.model_fields}
    for name, info in model.model_fields.items():
        alias = info.validation_alias or info.alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        names.update([name, *(c for c in choices if isinstance(c, str))])
    return names


def unknown_names_error(owner: str, unknown: set[str], what: str, accepted: set[str] | frozenset[str]) -> ConfigError:
    return ConfigError(
        f"{owner} got unknown {what} {', '.join(map(repr, sorted(unknown)))}; accepted: {', '.join(sorted(accepted))}"
    )


def resolve_config(
    settings: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    owner: str,
    registered_rewards_only: bool = False,
) -> tuple[StarsConfig, RewardSpec]:
    """The one place a call's settings become its `StarsConfig`: `settings` (by `StarsConfig`
    name: an adapter's fields, the CLI's flags, a server's defaults), then per-call `overrides`
    (any name in `CALL_SETTINGS`), validated once; and the call's reward reference, checked once
    (None: none given). An unknown keyword raises `ConfigError` listing the accepted ones: nothing
    is ignored. `registered_rewards_only` refuses anything but a built-in reward name (a server
    must not let clients load folders)."""
    unknown = set(overrides) - CALL_SETTINGS
    if unknown:
        raise unknown_names_error(owner, unknown, "keyword argument(s)", CALL_SETTINGS)
    values = dict(overrides)
    reward = values.pop("reward", None)
    check_reward(reward, registered_only=registered_rewards_only)
    return StarsConfig(**{**settings, **canonical(values)}), reward


# ---------------------------------------------------------------------- rewards
def check_reward(spec: Any, *, registered_only: bool = False) -> None:
    """Fail now, listing the built-in rewards, for a reward reference that cannot load later.

    Accepted: None (the default reward), a built-in name, a classifier folder or hub id
    ("org/name"), a `RewardModel`, or a function `(prompts, responses) -> scores`; with
    `registered_only`, None or a built-in name only.
    """
    if spec is None or (isinstance(spec, RewardModel) and not registered_only):
        return
    if registered_only:
        if not isinstance(spec, str) or spec not in available_rewards():
            raise UnknownRewardError(f"unknown reward {spec!r}; this server offers: {', '.join(available_rewards())}")
        return
    if isinstance(spec, str | os.PathLike):
        text = os.fspath(spec)
        if text in available_rewards() or "/" in text or os.sep in text or os.path.exists(text):
            return
        raise unknown_reward_error(text)
    if not callable(spec):
        load_reward(spec)  # a wrong type: the registry's own ConfigError, raised before anything loads


def reward_label(spec: Any) -> str | None:
    """A short, JSON-friendly name for a reward reference, known without loading it."""
    if spec is None or isinstance(spec, str | os.PathLike):
        return None if spec is None else os.fspath(spec)
    return str(getattr(spec, "name", None) or getattr(spec, "__qualname__", None) or type(spec).__name__)


def reward_key(spec: Any) -> Hashable:
    """Equal for two references to the same reward (names by text, objects by `reward_identity`)."""
    if spec is None or isinstance(spec, str | os.PathLike):
        return ("spec", None if spec is None else os.fspath(spec))
    return reward_identity(load_reward(spec))  # objects and functions: wrapping loads nothing


def resolve_reward(runtime: StarsRuntime, spec: RewardSpec) -> RewardModel:
    """The reward model a call runs with, loaded (once, cached) on the policy's device."""
    return runtime.reward if spec is None else load_reward(spec, device=runtime.reward_device)


_load_lock = threading.Lock()


class RuntimeSlot:
    """An adapter object's runtime: loaded on first use, and again only when its model settings
    change. Policies and rewards come from process-wide caches, so all adapters share them."""

    def __init__(self) -> None:
        self._entry: tuple[Any, StarsRuntime] | None = None  # (key, runtime), replaced as a whole

    def get(
        self,
        policy: str | None,
        reward: Any,
        *,
        dtype: str,
        device: str | None,
        base: StarsRuntime | None = None,
        policy_tokenizer: str | None = None,
    ) -> StarsRuntime:
        key = (policy, policy_tokenizer, dtype, device, id(base), reward_key(reward))
        entry = self._entry
        if entry is not None and entry[0] == key:  # loaded: no lock (another adapter may be loading)
            return entry[1]
        with _load_lock:
            if base is None:
                runtime = StarsRuntime.from_pretrained(
                    policy, reward, dtype=dtype, device=device, policy_tokenizer=policy_tokenizer
                )
            elif reward is None:
                runtime = base
            else:
                runtime = StarsRuntime(base.policy, resolve_reward(base, reward), base.config)
            self._entry = (key, runtime)
            return runtime

    @property
    def loaded(self) -> StarsRuntime | None:
        """The runtime if one was loaded (never loads)."""
        return None if self._entry is None else self._entry[1]


# ---------------------------------------------------------------------- one call
@dataclass(frozen=True)
class Delta:
    """New text of a stream; the last delta of every stream carries the `GenerationResult`."""

    text: str  # may be empty (a tail held back until the next segment settles it)
    so_far: str  # all text streamed so far, this delta included
    segment: Segment | None
    result: GenerationResult | None = None
    # With tools bound, `text` is content outside calls only, and the calls complete (and
    # accepted) in this delta come here, in order, with the ids of the final result's calls.
    tool_calls: tuple[ToolCall | InvalidToolCall, ...] = ()


@dataclass(frozen=True)
class Call:
    """One resolved call: the runtime, the validated config, the reward model and an optional
    context window below the model's (enforced with `PromptTooLongError` before generating)."""

    runtime: StarsRuntime
    config: StarsConfig
    reward: RewardModel
    context_window: int | None = None

    @property
    def reward_name(self) -> str:
        return self.reward.name

    def generate(self, prompts: Sequence[PromptInput], *, raise_errors: bool = True) -> list[GenerationResult]:
        return self.runtime.generate(
            prompts, self.config, reward=self.reward, raise_errors=raise_errors, context_window=self.context_window
        )

    async def agenerate(self, prompts: Sequence[PromptInput], *, raise_errors: bool = True) -> list[GenerationResult]:
        return await self.runtime.agenerate(
            prompts, self.config, reward=self.reward, raise_errors=raise_errors, context_window=self.context_window
        )

    def stream(self, prompt: PromptInput) -> DeltaStream:
        """Deltas of one prompt; the prompt is validated now, generation runs as they are read."""
        return stream_deltas(
            self.runtime.stream(prompt, self.config, reward=self.reward, context_window=self.context_window)
        )

    def astream(self, prompt: PromptInput) -> AsyncDeltaStream:
        """`stream` for asyncio; preparing happens in a worker thread at the first delta."""
        return astream_deltas(
            self.runtime.astream(prompt, self.config, reward=self.reward, context_window=self.context_window)
        )

    def with_config(self, **changes: Any) -> Call:
        """This call with some settings changed (validated again), e.g. one seed per choice."""
        return dataclasses.replace(self, config=self.config.updated(**changes))

    def describe(self, result: GenerationResult) -> dict[str, Any]:
        """A JSON-ready account of one result of this call: what generated and judged it, the
        STARS facts, every accepted segment, the config it ran with and the token usage."""
        return {
            "model": self.runtime.model_name,
            "reward_model": self.reward_name,
            "text": result.text,
            **result_facts(result),
            "segments": [segment_facts(s) for s in result.segments],
            "config": self.config.model_dump(mode="json"),
            "usage": token_usage([result]),
        }


def result_facts(result: GenerationResult) -> dict[str, Any]:
    """The STARS facts of one result: finish_reason, reward, strategy and stats."""
    return {
        "finish_reason": result.finish_reason,
        "reward": result.reward,
        "strategy": result.strategy,
        "stats": result.stats.as_dict(),
    }


def token_usage(results: Sequence[GenerationResult], prompt_of: Sequence[int] | None = None) -> dict[str, int]:
    """prompt_tokens, completion_tokens and total_tokens of some results together: every result's
    accepted tokens, and each distinct prompt's tokens once. `prompt_of[i]` says which prompt
    result i answers (n choices of one prompt share it, as OpenAI counts); by default each result
    has its own prompt."""
    prompts = range(len(results)) if prompt_of is None else prompt_of
    prompt = sum({p: r.stats.prompt_tokens for p, r in zip(prompts, results, strict=True)}.values())
    completion = sum(r.stats.accepted_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def segment_facts(segment: Segment) -> dict[str, Any]:
    """One accepted segment, JSON-ready (its token count instead of its token ids)."""
    names = ("index", "text", "reward", "threshold", "rejections", "forced", "finish_reason")
    return {**{name: getattr(segment, name) for name in names}, "tokens": len(segment.token_ids)}


def policy_label(policy: str | None) -> str:
    """The name a policy reference is shown under before it is loaded (tracing, payloads)."""
    if policy is None or policy.lower() in DEFAULT_POLICY_ALIASES:
        return SMOLLM2_GGUF.removesuffix(".gguf")
    return policy


def prepare_call(
    runtime: StarsRuntime,
    settings: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    owner: str,
    context_window: int | None = None,
    registered_rewards_only: bool = False,
) -> Call:
    """The one request path every surface takes (the CLI, `stars serve`, both adapters): settings +
    per-call overrides -> a `Call` whose config is validated once (`resolve_config`) and whose
    reward is resolved once. `context_window` below the model's is enforced when the prompts are
    prepared, in the one place the model's own window is."""
    config, reward = resolve_config(settings, overrides, owner=owner, registered_rewards_only=registered_rewards_only)
    return Call(runtime, config, resolve_reward(runtime, reward), context_window)


async def off_loop(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `function` in a worker thread: preparing a call may load a model, never on the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


class _Deltas:
    """Segments -> deltas; the final segment's text waits for the result (they arrive together).
    With tools bound, text that is (or may begin) a call is held back, and each call is handed
    out once its segment is accepted and the call is complete."""

    def __init__(self, request: Any = None) -> None:
        self.so_far = ""
        self.final: Segment | None = None
        self.text = ""  # all generated text (with tools, `so_far` is content only)
        self.calls_out = 0
        self.request = request  # the RequestState, for its tools (bound lazily by async streams)

    @property
    def tools(self) -> bool:
        return self.request is not None and self.request.prepared.tool_parser is not None

    def add(self, segment: Segment) -> Delta | None:
        self.text += segment.text
        if segment.final:
            self.final = segment
            return None
        if not self.tools:
            self.so_far += segment.text
            return Delta(segment.text, self.so_far, segment)
        view = self._parse(final=False)
        shown = view.content.strip()  # trailing space waits: a call may follow it
        text = shown[len(self.so_far) :] if shown.startswith(self.so_far) else ""
        self.so_far += text
        calls = view.calls_in_order[self.calls_out :]
        self.calls_out += len(calls)
        return Delta(text, self.so_far, segment, tool_calls=calls)

    def finish(self, result: GenerationResult | None) -> Delta:
        if result is None:  # the runtime always reports a finished request; guard against a silent loss
            raise RuntimeError("the STARS stream ended without a result")
        if not self.tools or result.content is None:
            self.so_far += self.final.text if self.final else ""
            return Delta(self.final.text if self.final else "", self.so_far, self.final, result)
        view = self._parse(final=True)
        text = result.content[len(self.so_far) :] if result.content.startswith(self.so_far) else ""
        self.so_far += text
        calls = view.calls_in_order[self.calls_out :]
        self.calls_out += len(calls)
        return Delta(text, self.so_far, self.final, result, tool_calls=calls)

    def _parse(self, *, final: bool) -> ParsedToolOutput:
        r = self.request
        return parse_tool_output(
            r.prepared.response_prefix + self.text,
            r.config.tools,
            r.prepared.tool_parser,
            seed=r.seed,
            final=final,
            parallel_tool_calls=r.config.parallel_tool_calls,
        )


def _request_of(stream: Any) -> Any:
    """The request of a one-prompt stream (None before an async stream has started)."""
    requests = getattr(getattr(stream, "job", None), "requests", None)
    return requests[0] if requests else None


class DeltaStream(ClosingStream[Delta]):
    """Text deltas of one request: one `Delta` per accepted segment, the last with the result.
    A request that fails raises its error. Leaving a loop over it early, `close()` or dropping it
    stops the request at its next round boundary; `cancel()` only flags it (safe from any thread)."""

    def __init__(self, stream: GenerationStream):
        self._stream = stream
        self._deltas = _Deltas(_request_of(stream))
        self._done = False

    def __next__(self) -> Delta:
        while not self._done:
            try:
                segment = next(self._stream)  # its own __next__: iterating it would close it between items
            except StopIteration:
                self._done = True
                return self._deltas.finish(self._stream.result)
            if (delta := self._deltas.add(segment)) is not None:
                return delta
        raise StopIteration

    @property
    def result(self) -> GenerationResult | None:
        return self._stream.result

    def cancel(self) -> None:
        self._stream.cancel()

    def close(self) -> None:
        self._stream.close()


class AsyncDeltaStream(AsyncClosingStream[Delta]):
    """`DeltaStream` for asyncio; preparing the request happens in a worker thread at the first item."""

    def __init__(self, stream: AsyncGenerationStream):
        self._stream = stream
        self._deltas = _Deltas()
        self._done = False

    async def __anext__(self) -> Delta:
        while not self._done:
            try:
                segment = await self._stream.__anext__()
                if self._deltas.request is None:
                    self._deltas.request = _request_of(self._stream)
            except StopAsyncIteration:
                if self._deltas.request is None:
                    self._deltas.request = _request_of(self._stream)
                self._done = True
                return self._deltas.finish(self._stream.result)
            if (delta := self._deltas.add(segment)) is not None:
                return delta
        raise StopAsyncIteration

    @property
    def result(self) -> GenerationResult | None:
        return self._stream.result

    def cancel(self) -> None:
        self._stream.cancel()

    async def aclose(self) -> None:
        await self._stream.aclose()


def stream_deltas(stream: GenerationStream) -> DeltaStream:
    """The deltas of a segment stream (see `DeltaStream`)."""
    return DeltaStream(stream)


def astream_deltas(stream: AsyncGenerationStream) -> AsyncDeltaStream:
    """The deltas of an async segment stream (see `AsyncDeltaStream`)."""
    return AsyncDeltaStream(stream)


# ---------------------------------------------------------------------- tokens
def text_token_ids(runtime: StarsRuntime, text: str) -> list[int]:
    """`text` in the policy's own tokens (no special tokens added)."""
    return runtime.token_ids(text)


def prompt_token_ids(runtime: StarsRuntime, prompt: PromptInput, config: StarsConfig) -> list[int]:
    """The tokens the policy sees for `prompt` (chat template and system prompt as `config` says),
    whatever its length: counting never raises `PromptTooLongError`."""
    return runtime.render(prompt, config)
