"""`StarsLLM`: a LangChain text-completion model that decodes with STARS.

    from langchain_stars import StarsLLM
    llm = StarsLLM()                                   # embedded policy and default reward
    safe = StarsLLM(reward="sentiment", horizon=16)    # settings for this chain
    chain = prompt | safe | StrOutputParser()
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import ConfigDict, Field

from langchain_stars._settings import (
    PreparedCall,
    StarsSettings,
    generation_info,
    token_usage,
)
from langchain_stars._streaming import astream_deltas, stream_deltas
from stars_plugins import GenerationResult


class StarsLLM(StarsSettings, BaseLLM):
    """STARS reward-guided decoding as a LangChain LLM.

    - `invoke` / `batch` / `generate`: all prompts of a call run as one lockstep batch.
    - `stream` / `astream`: one chunk per accepted segment; `on_llm_new_token` fires for each.
    - async (`ainvoke`, `abatch`, `astream`) decodes in a worker thread: the event loop never blocks.
    - `stop` is honored everywhere: generation ends at the first stop string and the text is cut
      before it. Only new text is returned, never the prompt.
    - Plain prompts are wrapped in the policy's chat template (`apply_chat_template=False` to switch off).
    - Each `Generation.generation_info` holds the STARS facts: finish_reason, reward, strategy, stats.

    Every decoding setting is a field, can be made configurable (`configurable_fields`, or
    `configurable_settings()`), and can be overridden per call (`llm.invoke(p, horizon=8)`, `.bind(...)`).
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True
    )

    streaming: bool = Field(
        False,
        description="Make single-prompt `invoke`/`generate` calls stream internally, so that callbacks "
        "receive `on_llm_new_token` for every accepted segment (batches still run as one batch).",
    )

    @property
    def _llm_type(self) -> str:
        return "stars"

    # ------------------------------------------------------------------ sync
    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        call = self.prepare_call(stop, kwargs)
        if self.streaming and len(prompts) == 1:
            results = []
            for text, result in stream_deltas(call.runtime, prompts[0], call.config, call.reward):
                if run_manager and text:
                    run_manager.on_llm_new_token(text, chunk=_chunk(text, result))
                results += [result] if result is not None else []
            return self._result(results, call)
        results = call.runtime.generate(prompts, call.config, reward=call.reward)
        return self._result(results, call)

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        call = self.prepare_call(stop, kwargs)
        deltas = stream_deltas(call.runtime, prompt, call.config, call.reward)
        try:
            for text, result in deltas:
                chunk = _chunk(text, result)
                if run_manager and text:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            deltas.close()  # a consumer that stops early frees the batch now, not at garbage collection

    # ------------------------------------------------------------------ async
    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        call = await self._aprepare_call(stop, kwargs)
        if self.streaming and len(prompts) == 1:
            results = []
            async for text, result in astream_deltas(call.runtime, prompts[0], call.config, call.reward):
                if run_manager and text:
                    await run_manager.on_llm_new_token(text, chunk=_chunk(text, result))
                results += [result] if result is not None else []
            return self._result(results, call)
        results = await call.runtime.agenerate(prompts, call.config, reward=call.reward)
        return self._result(results, call)

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        call = await self._aprepare_call(stop, kwargs)
        deltas = astream_deltas(call.runtime, prompt, call.config, call.reward)
        try:
            async for text, result in deltas:
                chunk = _chunk(text, result)
                if run_manager and text:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            await deltas.aclose()  # cancels an abandoned request at its next round boundary

    async def _aprepare_call(self, stop: list[str] | None, kwargs: dict[str, Any]) -> PreparedCall:
        if self.runtime_loaded and kwargs.get("reward") is None:
            return self.prepare_call(stop, kwargs)
        return await asyncio.to_thread(self.prepare_call, stop, kwargs)  # may load a model: not on the loop

    # ------------------------------------------------------------------ results
    def _result(self, results: list[GenerationResult], call: PreparedCall) -> LLMResult:
        return LLMResult(
            generations=[[Generation(text=r.text, generation_info=generation_info(r))] for r in results],
            llm_output={
                "model_name": call.runtime.model_name,
                "reward_model": call.reward_name,
                "token_usage": token_usage(results),
            },
        )


def _chunk(text: str, result: GenerationResult | None) -> GenerationChunk:
    """A streamed piece; the last one carries the generation's STARS facts."""
    return GenerationChunk(text=text, generation_info=generation_info(result) if result is not None else None)
