"""LlamaIndex integration of STARS reward-guided decoding: `from llama_index.llms.stars import StarsLLM`."""

from llama_index.llms.stars.base import CALL_SETTINGS, StarsLLM, StructuredOutputError

__all__ = ["CALL_SETTINGS", "StarsLLM", "StructuredOutputError"]
