"""`StarsLLM`: a LangChain text-completion model that decodes with STARS."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from langchain_core.runnables import Runnable

from langchain_stars._settings import SETTING_NAMES, StarsSettings
from stars_plugins import GenerationResult, calls
from stars_plugins.streams import closing_stream


class StarsLLM(StarsSettings, BaseLLM):
    """STARS reward-guided decoding as a LangChain LLM (docs/langchain.md): a call's prompts run as
    one lockstep batch; streams yield one chunk per accepted segment and cancel when left early;
    `generation_info` holds the STARS facts; per-call settings are part of the LLM cache key."""

    stream = closing_stream(BaseLLM.stream)  # leaving a loop over a stream early cancels its request
    astream = closing_stream(BaseLLM.astream)

    @property
    def _llm_type(self) -> str:
        return "stars"

    def generate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: Any = None, **kwargs: Any
    ) -> LLMResult:
        """`BaseLLM.generate`, with per-call settings moved into the fields of a copy: BaseLLM keys
        its cache on the fields (`_identifying_params`) and the stop words, not on call kwargs."""
        llm, rest = self._with_call_settings(kwargs)
        return super(StarsLLM, llm).generate(prompts, stop, callbacks, **rest)

    async def agenerate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: Any = None, **kwargs: Any
    ) -> LLMResult:
        llm, rest = self._with_call_settings(kwargs)
        return await super(StarsLLM, llm).agenerate(prompts, stop, callbacks, **rest)

    def _with_call_settings(self, kwargs: dict[str, Any]) -> tuple[StarsLLM, dict[str, Any]]:
        settings = {name: value for name, value in kwargs.items() if name in calls.CALL_SETTINGS}
        if not settings:
            return self, kwargs
        fields = {name: getattr(self, name) for name in type(self).model_fields if name not in SETTING_NAMES}
        llm = type(self)(**{**fields, **self.config_settings(), **calls.canonical(settings)})
        return llm, {name: value for name, value in kwargs.items() if name not in settings}

    def batch(
        self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[str]:
        if return_exceptions:  # one request per input: a failing prompt fails only its own entry
            return Runnable.batch(self, inputs, config, return_exceptions=True, **kwargs)
        return super().batch(inputs, config, **kwargs)

    async def abatch(
        self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[str]:
        if return_exceptions:
            return await Runnable.abatch(self, inputs, config, return_exceptions=True, **kwargs)
        return await super().abatch(inputs, config, **kwargs)

    def _prompts(self, inputs: list[str]) -> list[str]:
        return list(inputs)

    def _prompt(self, input: str) -> str:
        return input

    def _output(self, results: list[GenerationResult], call: calls.Call) -> LLMResult:
        generations = [[Generation(text=r.text, generation_info=calls.result_facts(r))] for r in results]
        output = {"model_name": call.runtime.model_name, "reward_model": call.reward_name}
        return LLMResult(generations=generations, llm_output={**output, "token_usage": calls.token_usage(results)})

    def _chunk(self, delta: calls.Delta, call: calls.Call) -> GenerationChunk:
        """A streamed piece; the last one carries the generation's STARS facts."""
        info = calls.result_facts(delta.result) if delta.result is not None else None
        return GenerationChunk(text=delta.text, generation_info=info)
