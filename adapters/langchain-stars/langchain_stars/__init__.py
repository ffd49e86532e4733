"""LangChain integration of STARS reward-guided decoding (`pip install langchain-stars`; see
docs/langchain.md): `StarsLLM(reward="sentiment", horizon=16)`, `ChatStars()`."""

from langchain_stars._settings import CALL_KWARGS, SETTING_NAMES, StarsSettings
from langchain_stars.chat_models import ChatStars
from langchain_stars.llms import StarsLLM

__all__ = ["CALL_KWARGS", "SETTING_NAMES", "ChatStars", "StarsLLM", "StarsSettings"]
