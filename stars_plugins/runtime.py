"""`StarsRuntime`: owns a policy and a reward model; generates and streams with any strategy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import torch

from stars_plugins.config import StarsConfig
from stars_plugins.decoding import DecodeContext, FinishEvent, RequestState, SegmentEvent, get_strategy
from stars_plugins.decoding.state import Event
from stars_plugins.errors import PromptError, StarsError
from stars_plugins.policy import HFPolicy, PromptInput, load_policy
from stars_plugins.results import GenerationResult, Segment
from stars_plugins.rewards import RewardModel, load_reward, score_checked
from stars_plugins.rewards.registry import RewardSpec


class StarsRuntime:
    """A policy model plus a default reward model and default configuration.

    Runtimes are cheap: `from_pretrained` takes the policy and reward model from process-wide
    caches, so many runtimes (one per chain, say) share one loaded model. Everything else is
    per call: pass a `StarsConfig`, keyword overrides (`horizon=8`), a `strategy` or a `reward`.
    """

    def __init__(self, policy: HFPolicy, reward: RewardModel | None = None, config: StarsConfig | None = None):
        self.policy = policy
        self.reward = reward if reward is not None else load_reward(None)
        self.config = config or StarsConfig()

    @classmethod
    def from_pretrained(
        cls,
        policy: str | os.PathLike[str] | None = None,
        reward: RewardSpec = None,
        *,
        config: StarsConfig | None = None,
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
        `RewardModel`, or a function `(prompts, responses) -> scores`."""
        loaded = load_policy(
            policy, dtype=dtype, device=device, device_map=device_map, revision=revision,
            trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
        )
        reward_model = load_reward(reward, device=reward_device or str(loaded.device))
        return cls(loaded, reward_model, config)

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        return self.policy.name

    @property
    def context_window(self) -> int:
        return self.policy.context_window

    def resolve_config(self, config: StarsConfig | None = None, *, strategy: str | None = None,
                       **overrides: Any) -> StarsConfig:
        """The config a call runs with: `config` (or the runtime's default) plus overrides."""
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
        **overrides: Any,
    ) -> list[GenerationResult]:
        """Generate a response for every prompt, all in one lockstep batch.

        Returns one `GenerationResult` per prompt, in order (`[]` for no prompts). A request whose
        reward model fails ends with `finish_reason="error"`; with `raise_errors` (the default)
        its error is raised after the batch, carrying every result in `.results`.
        """
        job = self.start(prompts, config, strategy=strategy, reward=reward, **overrides)
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
        **overrides: Any,
    ) -> GenerationStream:
        """Iterate over accepted segments of one prompt as they are accepted.

        The returned stream's `.result` holds the full `GenerationResult` once it is exhausted.
        Leaving the loop early (or `stream.close()`) stops generation and frees its batch.
        """
        if not isinstance(prompt, str) and _is_prompt_list(prompt):
            raise PromptError("stream() takes one prompt; use generate() for several")
        job = self.start([prompt], config, strategy=strategy, reward=reward, **overrides)
        return GenerationStream(job)

    async def agenerate(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        raise_errors: bool = True,
        **overrides: Any,
    ) -> list[GenerationResult]:
        """`generate` in a worker thread: the event loop keeps running. Cancelling the awaiting
        task stops the batch at its next round boundary."""
        # Tokenizing and resolving a reward model can take a while: not on the event loop either.
        job = await asyncio.to_thread(self.start, prompts, config, strategy=strategy, reward=reward, **overrides)
        try:
            results = await asyncio.to_thread(job.run)
        except asyncio.CancelledError:
            job.cancel()
            raise
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
        **overrides: Any,
    ) -> AsyncGenerationStream:
        """`stream` for asyncio: segments arrive without blocking the event loop. Preparing the
        request happens in the worker thread too, so its errors surface at the first `__anext__`."""
        return AsyncGenerationStream(
            lambda: self.stream(prompt, config, strategy=strategy, reward=reward, **overrides)
        )

    def start(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        config: StarsConfig | None = None,
        *,
        strategy: str | None = None,
        reward: RewardSpec = None,
        **overrides: Any,
    ) -> GenerationJob:
        """Validate and tokenize the prompts now; run later with `job.run()` or `job.events()`."""
        resolved = self.resolve_config(config, strategy=strategy, **overrides)
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        reward_model = self.reward if reward is None else load_reward(reward, device=str(self.policy.device))
        decoder = get_strategy(resolved.strategy)
        prepared = self.policy.prepare(prompt_list, resolved)
        requests = decoder.requests(prepared, resolved)
        return GenerationJob(decoder, DecodeContext(self.policy, reward_model), requests)

    def score(self, prompts: Sequence[str], responses: Sequence[str], reward: RewardSpec = None) -> list[float]:
        """Score (prompt, response) pairs with the runtime's (or the given) reward model."""
        model = self.reward if reward is None else load_reward(reward)
        return score_checked(model, prompts, responses)

    def __repr__(self) -> str:
        return f"StarsRuntime(policy={self.policy.name!r}, reward={self.reward.name!r})"


class GenerationJob:
    """Requests that were validated together and run as one lockstep batch."""

    def __init__(self, decoder: Any, ctx: DecodeContext, requests: list[RequestState]):
        self.decoder = decoder
        self.ctx = ctx
        self.requests = requests

    def events(self) -> Iterator[Event]:
        if not self.requests:
            return iter(())
        return self.decoder.run(self.ctx, self.requests)

    def run(self) -> list[GenerationResult]:
        results: dict[int, GenerationResult] = {}
        for event in self.events():
            if isinstance(event, FinishEvent):
                results[id(event.request)] = event.result
        return [results.get(id(r)) or r.result() for r in self.requests]

    def cancel(self) -> None:
        """Stop every request at the next round boundary (thread-safe: a flag per request)."""
        for request in self.requests:
            request.cancelled = True


class GenerationStream(Iterator[Segment]):
    """Accepted segments of one request; `.result` is set when the stream ends."""

    def __init__(self, job: GenerationJob):
        self._job = job
        self._events = job.events()
        self.result: GenerationResult | None = None

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> Segment:
        for event in self._events:
            if isinstance(event, SegmentEvent):
                return event.segment
            if isinstance(event, FinishEvent):
                self.result = event.result
                if event.result.error is not None:
                    raise event.result.error
        raise StopIteration

    def cancel(self) -> None:
        """Ask the request to stop at its next round boundary (safe from any thread)."""
        self._job.cancel()

    def close(self) -> None:
        """Stop now and free the batch; the runtime stays ready for the next call."""
        self._job.cancel()
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGenerationStream(AsyncIterator[Segment]):
    """A `GenerationStream` driven from a worker thread, consumed with `async for`.

    A consumer that leaves early should `await stream.aclose()`; one that just drops the stream
    cancels it when it is garbage-collected. Either way the request stops at its next round.
    """

    def __init__(self, open_stream: Callable[[], GenerationStream]):
        self._open_stream = open_stream
        self._stream: GenerationStream | None = None
        self._cancelled = False
        self._queue: asyncio.Queue[Any] | None = None
        self.result: GenerationResult | None = None

    def __aiter__(self) -> AsyncGenerationStream:
        return self

    async def __anext__(self) -> Segment:
        if self._queue is None:
            self._start()
        assert self._queue is not None
        kind, item = await self._queue.get()
        if kind == "segment":
            return item
        self._queue.put_nowait((kind, item))  # every later __anext__ ends the same way
        if kind == "error":
            raise item
        raise StopAsyncIteration

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queue = queue

        def put(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is gone: nobody is listening any more
                self.cancel()

        def pump() -> None:
            try:
                self._stream = self._open_stream()
                if self._cancelled:
                    self._stream.cancel()
                for segment in self._stream:
                    put("segment", segment)
                self.result = self._stream.result
                put("end", None)
            except BaseException as exc:  # delivered to the consumer, not lost in the thread
                self.result = self._stream.result if self._stream is not None else None
                put("error", exc)

        loop.run_in_executor(None, pump)

    def cancel(self) -> None:
        """Ask the request to stop at its next round boundary (safe from any thread)."""
        self._cancelled = True
        if self._stream is not None:
            self._stream.cancel()

    async def aclose(self) -> None:
        """Stop generation at the next round boundary (a consumer that leaves early)."""
        self.cancel()

    def __del__(self) -> None:
        if self.result is None:
            self.cancel()


def _is_prompt_list(prompt: Any) -> bool:
    return isinstance(prompt, Sequence) and bool(prompt) and all(isinstance(p, str) for p in prompt)


def _raise_first_error(results: list[GenerationResult]) -> None:
    for result in results:
        if result.error is not None:
            error = result.error
            if isinstance(error, StarsError):
                error.results = results  # type: ignore[attr-defined]
            raise error
