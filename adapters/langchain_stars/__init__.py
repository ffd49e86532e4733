"""LangChain integration of STARS reward-guided decoding (`pip install "stars-plugins[langchain]"`;
see docs/langchain.md): `StarsLLM(reward="sentiment", horizon=16)`, `ChatStars()`."""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('langchain_stars needs langchain-core: pip install "stars-plugins[langchain]"') from exc

from langchain_stars._settings import CALL_KWARGS, SETTING_NAMES, StarsSettings
from langchain_stars.chat_models import ChatStars, ToolCallingNotSupportedError
from langchain_stars.llms import StarsLLM

__all__ = ["CALL_KWARGS", "SETTING_NAMES", "ChatStars", "StarsLLM", "StarsSettings", "ToolCallingNotSupportedError"]
