"""`StarsRuntime`: owns a policy and a reward model; generates and streams with any strategy."""

from __future__ import annotations

import asyncio
import os
import queue
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
from typing import Any

import torch

from stars_plugins.backends import load_policy
from stars_plugins.backends.protocol import PolicyBackend
from stars_plugins.config import StarsConfig
from stars_plugins.decoding import (
    DecodeContext,
    FinishEvent,
    RequestState,
    SegmentEvent,
    get_strategy,
)
from stars_plugins.decoding.state import Event
from stars_plugins.devices import resolve_device
from stars_plugins.errors import ConfigError, PromptError, StarsError
from stars_plugins.model_source import is_server_url, policy_source
from stars_plugins.prompts import PromptInput, PromptOptions, prompt_list
from stars_plugins.results import GenerationResult, Segment
from stars_plugins.rewards import RewardModel, load_reward, score_checked
from stars_plugins.rewards.registry import RewardSpec
from stars_plugins.scheduler import Scheduler, scheduler_for
from stars_plugins.streams import AsyncClosingStream, ClosingStream


class StarsRuntime:
    """A policy model plus a default reward model and default configuration.

    Runtimes are cheap: `from_pretrained` takes the policy and reward model from process-wide
    caches, so many runtimes (one per chain, say) share one loaded model. Everything else is
    per call: pass a `StarsConfig`, keyword overrides (`horizon=8`), a `strategy` or a `reward`.
    """

    def __init__(self, policy: PolicyBackend, reward: RewardModel | None = None, config: StarsConfig | None = None):
        self.policy = policy
        self.reward = reward if reward is not None else load_reward(None)
        self.config = config or StarsConfig()

    @classmethod
    def from_pretrained(
        cls,
        policy: str | os.PathLike[str] | Sequence[str] | None = None,
        reward: RewardSpec = None,
        *,
        config: StarsConfig | None = None,
        policy_tokenizer: str | os.PathLike[str] | None = None,
        engine: str | None = None,
        api_key: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = None,
        device_map: str | dict[str, Any] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        reward_device: str | None = None,
    ) -> StarsRuntime:
        """Load (or reuse) a policy by hub id, folder or GGUF file (default: the embedded
        SmolLM2-135M-Instruct) and a reward: a built-in name, a classifier folder or id, a
        `RewardModel`, or a function `(prompts, responses) -> scores`.

        `policy="http://host:8000/v1"` (or a list of replica URLs) runs the policy on a serving
        engine (vLLM, SGLang, llama.cpp's server; `engine` auto-detected), with `policy_tokenizer`
        the served model's tokenizer and `api_key` (or STARS_ENGINE_API_KEY); see docs/serving.md."""
        if config is not None and not isinstance(config, StarsConfig):
            raise ConfigError(f"config must be a StarsConfig, got {type(config).__name__}")
        # Everything cheap to check comes first (the policy's path, the device, the reward, which is
        # usually small), so that a mistake fails in a second, not after the policy has loaded.
        if not is_server_url(policy):
            policy_source(policy)
        reward_model = None
        if device_map is None:
            reward_model = load_reward(reward, device=reward_device or str(resolve_device(device)))
        loaded = load_policy(
            policy,
            policy_tokenizer=policy_tokenizer,
            engine=engine,
            api_key=api_key,
            dtype=dtype,
            device=device,
            device_map=device_map,
            revision=revision,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
        )
        if reward_model is None:
            reward_model = load_reward(reward, device=reward_device or str(loaded.device))
        return cls(loaded, reward_model, config)

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        return self.policy.name

    @property
    def context_window(self) -> int:
        return self.policy.context_window

    @property
    def has_chat_template(self) -> bool:
        """Whether the policy's tokenizer has a chat template (else prompts are rendered as text)."""
        return self.policy.has_chat_template

    def render(self, prompt: PromptInput, config: StarsConfig | None = None) -> list[int]:
        """The token ids the policy sees for `prompt` under `config`'s prompt settings (chat
        template, system prompt), whatever its length: rendering never raises `PromptTooLongError`."""
        return self.policy.render(prompt, PromptOptions.of(config or self.config))[0]

    def token_ids(self, text: str) -> list[int]:
        """`text` in the policy's own tokens (no special tokens added)."""
        return self.policy.token_ids(text)

    def count_tokens(self, text: str) -> int:
        return len(self.token_ids(text))

    def resolve_config(
        self, config: StarsConfig | None = None, *, strategy: str | None = None, **overrides: Any
    ) -> StarsConfig:
        """The config a call runs with: `config` (or the runtime's default) plus overrides,
        validated by `StarsConfig` (an unregistered strategy raises `UnknownStrategyError`)."""
        base = config or self.config
        if strategy is not None:
            overrides["strategy"] = strategy
        return base.updated(**overrides)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        raise_errors: bool = True,
        context_window: int | None = None,
        **overrides: Any,
    ) -> list[GenerationResult]:
        """Generate a response for every prompt, all in one lockstep batch.

        Returns one `GenerationResult` per prompt, in order (`[]` for no prompts). A request whose
        reward model fails ends with `finish_reason="error"`; with `raise_errors` (the default)
        its error is raised after the batch, carrying every result in `.results`.
        `context_window` enforces a window smaller than the model's (`PromptTooLongError`).
        """
        job = self._start(prompts, config, strategy, reward, context_window, overrides)
        results = job.run()
        if raise_errors:
            _raise_first_error(results)
        return results

    def stream(
        self,
        prompt: PromptInput,
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        context_window: int | None = None,
        **overrides: Any,
    ) -> GenerationStream:
        """Iterate over accepted segments of one prompt as they are accepted.

        The returned stream's `.result` holds the full `GenerationResult` once it is exhausted.
        Leaving a `for` loop over it early (`break`, an exception), `stream.close()`, leaving a
        `with` block or dropping the stream stops generation at the next round and frees its rows.
        """
        if not isinstance(prompt, str) and _is_prompt_list(prompt):
            raise PromptError("stream() takes one prompt; use generate() for several")
        return GenerationStream(self._start([prompt], config, strategy, reward, context_window, overrides))

    async def agenerate(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        raise_errors: bool = True,
        context_window: int | None = None,
        **overrides: Any,
    ) -> list[GenerationResult]:
        """`generate` in a worker thread: the event loop keeps running. Cancelling the awaiting
        task stops the batch at its next round boundary."""
        # Tokenizing and resolving a reward model can take a while: not on the event loop either.
        job = await asyncio.to_thread(self._start, prompts, config, strategy, reward, context_window, overrides)
        results = await job.arun()  # a cancelled task cancels its requests (aevents' finally)
        if raise_errors:
            _raise_first_error(results)
        return results

    def astream(
        self,
        prompt: PromptInput,
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        context_window: int | None = None,
        **overrides: Any,
    ) -> AsyncGenerationStream:
        """`stream` for asyncio: segments arrive without blocking the event loop. Preparing the
        request happens in the worker thread too, so its errors surface at the first `__anext__`.
        Leaving an `async for` early, `await stream.aclose()` or dropping it stops generation."""
        if not isinstance(prompt, str) and _is_prompt_list(prompt):
            raise PromptError("astream() takes one prompt; use agenerate() for several")
        return AsyncGenerationStream(lambda: self._start([prompt], config, strategy, reward, context_window, overrides))

    def _start(
        self,
        prompts: Any,
        config: StarsConfig | None,
        strategy: str | None,
        reward: RewardSpec,
        context_window: int | None,
        overrides: dict[str, Any],
    ) -> GenerationJob:
        return self.start(prompts, config, strategy=strategy, reward=reward, context_window=context_window, **overrides)

    def start(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        context_window: int | None = None,
        **overrides: Any,
    ) -> GenerationJob:
        """Validate and tokenize the prompts now; run later with `job.run()` or `job.events()`.
        `context_window` enforces a window smaller than the model's (`PromptTooLongError`)."""
        resolved = self.resolve_config(config, strategy=strategy, **overrides)
        checked = prompt_list(prompts)
        reward_model = self.reward if reward is None else load_reward(reward, device=self.reward_device)
        decoder = get_strategy(resolved.strategy)
        resolved = _constrained_here(self.policy, decoder, resolved)
        prepared = self.policy.prepare(checked, PromptOptions.of(resolved, context_window))
        requests = decoder.requests(prepared, resolved)
        return GenerationJob(decoder, DecodeContext(self.policy, reward_model), requests, self.scheduler)

    @property
    def reward_device(self) -> str:
        """Where rewards named per call are loaded: the policy's device (CPU for remote policies)."""
        return str(getattr(self.policy, "device", "cpu"))

    @property
    def scheduler(self) -> Scheduler:
        """The policy's request scheduler, shared by every runtime using this policy. Tune it with
        `runtime.scheduler.configure(max_batch_rows=..., max_wait=...)`."""
        return scheduler_for(self.policy)

    def score(self, prompts: Sequence[str], responses: Sequence[str], reward: RewardSpec = None) -> list[float]:
        """Score (prompt, response) pairs with the runtime's (or the given) reward model."""
        model = self.reward if reward is None else load_reward(reward, device=self.reward_device)
        return score_checked(model, prompts, responses)

    def __repr__(self) -> str:
        return f"StarsRuntime(policy={self.policy.name!r}, reward={self.reward.name!r})"


class GenerationJob:
    """Requests validated together. Running them submits them to the policy's scheduler, which
    batches them with whatever else is running; each job receives only its own events."""

    def __init__(self, strategy: Any, ctx: DecodeContext, requests: list[RequestState], scheduler: Scheduler):
        self.strategy = strategy
        self.ctx = ctx
        self.requests = requests
        self.scheduler = scheduler

    def events(self) -> Generator[Event, None, None]:
        """Events of this job's requests as they happen; closing the iterator early cancels them."""
        if not self.requests:
            return
        inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.scheduler.submit(self.strategy, self.ctx, self.requests, inbox.put)
        pending = len(self.requests)
        try:
            while pending:
                event = inbox.get()
                pending -= isinstance(event, FinishEvent)
                yield event
        finally:
            if pending:
                self.cancel()

    async def aevents(self) -> AsyncGenerator[Event, None]:
        """`events` for asyncio: nothing blocks the event loop."""
        if not self.requests:
            return
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Event] = asyncio.Queue()

        def deliver(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                self.cancel()

        self.scheduler.submit(self.strategy, self.ctx, self.requests, deliver)
        pending = len(self.requests)
        try:
            while pending:
                event = await inbox.get()
                pending -= isinstance(event, FinishEvent)
                yield event
        finally:
            if pending:
                self.cancel()

    def run(self) -> list[GenerationResult]:
        return self._collect(self.events())

    async def arun(self) -> list[GenerationResult]:
        results: dict[int, GenerationResult] = {}
        async for event in self.aevents():
            if isinstance(event, FinishEvent):
                results[id(event.request)] = event.result
        return [results.get(id(r)) or r.result() for r in self.requests]

    def _collect(self, events: Iterator[Event]) -> list[GenerationResult]:
        results: dict[int, GenerationResult] = {}
        for event in events:
            if isinstance(event, FinishEvent):
                results[id(event.request)] = event.result
        return [results.get(id(r)) or r.result() for r in self.requests]

    def cancel(self) -> None:
        """Stop every request at the next round boundary (thread-safe: a flag per request)."""
        for request in self.requests:
            request.cancelled = True


class GenerationStream(ClosingStream[Segment]):
    """Accepted segments of one request; `.result` is set when the stream ends.

    A `for` loop that ends early (`break`, `return`, an exception) cancels the request even while
    you still hold the stream; so do `close()`, leaving a `with` block and garbage collection. The
    request then stops at its next round boundary and the runtime stays ready for the next call.
    """

    def __init__(self, job: GenerationJob):
        self._job = job
        self._events: Generator[Event, None, None] = job.events()
        self.result: GenerationResult | None = None

    def __next__(self) -> Segment:
        for event in self._events:
            if isinstance(event, SegmentEvent):
                return event.segment
            if isinstance(event, FinishEvent):
                self.result = event.result
                if event.result.error is not None:
                    raise event.result.error
        raise StopIteration

    @property
    def job(self) -> GenerationJob:
        return self._job

    def cancel(self) -> None:
        """Ask the request to stop at its next round boundary (safe from any thread)."""
        self._job.cancel()

    def close(self) -> None:
        """Stop reading: an unfinished request leaves its batch at the next round boundary."""
        if self.result is None:
            self._job.cancel()
        self._events.close()

    def __del__(self) -> None:
        if self.result is None:
            self._job.cancel()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGenerationStream(AsyncClosingStream[Segment]):
    """Accepted segments of one request for `async for`; `.result` is set when it ends.

    An `async for` that ends early, `await stream.aclose()`, or dropping the stream cancels the
    request: it stops at its next round boundary.
    """

    def __init__(self, open_job: Callable[[], GenerationJob]):
        self._open_job = open_job
        self._job: GenerationJob | None = None
        self._events: AsyncGenerator[Event, None] | None = None
        self.result: GenerationResult | None = None

    async def __anext__(self) -> Segment:
        if self._events is None:
            if self.result is not None:
                raise StopAsyncIteration
            self._job = await asyncio.to_thread(self._open_job)  # tokenizing: off the event loop
            self._events = self._job.aevents()
        async for event in self._events:
            if isinstance(event, SegmentEvent):
                return event.segment
            if isinstance(event, FinishEvent):
                self.result = event.result
                if event.result.error is not None:
                    raise event.result.error
        raise StopAsyncIteration

    @property
    def job(self) -> GenerationJob | None:
        """The job, once the first `__anext__` has prepared it."""
        return self._job

    def cancel(self) -> None:
        """Ask the request to stop at its next round boundary (safe from any thread)."""
        if self._job is not None and self.result is None:
            self._job.cancel()

    async def aclose(self) -> None:
        """Stop generation (a consumer that leaves early) and release the stream."""
        self.cancel()
        if self._events is not None:
            await self._events.aclose()

    def __del__(self) -> None:
        self.cancel()


def _constrained_here(policy: Any, decoder: Any, config: StarsConfig) -> StarsConfig:
    """A constrained config as this policy backend runs it: a backend with `constrained_config`
    (a serving engine, whose grammar cannot resume mid-answer) may reshape the request's segments
    or refuse it, now, before any model work."""
    fit = getattr(policy, "constrained_config", None)
    if config.constraint is None or fit is None:
        return config
    rule = getattr(decoder, "rule", None)
    return fit(config, boundary=rule is not None and rule.boundary(config) is not None)


def _is_prompt_list(prompt: Any) -> bool:
    return isinstance(prompt, Sequence) and bool(prompt) and all(isinstance(p, str) for p in prompt)


def _raise_first_error(results: list[GenerationResult]) -> None:
    for result in results:
        if result.error is not None:
            error = result.error
            if isinstance(error, StarsError):
                error.results = results  # type: ignore[attr-defined]
            raise error
