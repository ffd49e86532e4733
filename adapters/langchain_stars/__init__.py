"""LangChain integration of STARS reward-guided decoding.

    from langchain_stars import StarsLLM, ChatStars
    llm = StarsLLM()                                    # embedded defaults
    safe = StarsLLM(reward="sentiment", horizon=16)     # settings for this chain
    chain = prompt | safe | StrOutputParser()

Install with `pip install "stars-plugins[langchain]"`. See docs/langchain.md.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'langchain_stars needs langchain-core; install it with: pip install "stars-plugins[langchain]"'
    ) from exc

from langchain_stars._settings import CALL_KWARGS, SETTING_NAMES, StarsSettings
from langchain_stars.chat_models import ChatStars
from langchain_stars.llms import StarsLLM

__all__ = ["CALL_KWARGS", "SETTING_NAMES", "ChatStars", "StarsLLM", "StarsSettings"]
