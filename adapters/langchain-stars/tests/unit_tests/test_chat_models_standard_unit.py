"""langchain-tests' standard unit suite for `ChatStars`.

`langchain_tests` is imported at module level on purpose: without it this module fails to import,
which fails the run (a collection error), instead of skipping the suite and passing without it.
"""

from __future__ import annotations

from typing import Any

from langchain_stars import ChatStars
from langchain_tests.unit_tests import ChatModelUnitTests


class TestChatStarsStandard(ChatModelUnitTests):
    """Construction, serialisation, tracing params, `with_structured_output` for every method; the tool
    tests are skipped by the suite itself while `has_tool_calling` is False."""

    @property
    def chat_model_class(self) -> type[ChatStars]:
        return ChatStars

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"horizon": 4, "max_rejections": 0}

    @property
    def has_tool_calling(self) -> bool:  # bind_tools exists only to say why it is not supported
        return False

    @property
    def has_structured_output(self) -> bool:  # constrained decoding (docs/langchain.md)
        return True

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # A local model: there is no API key, request timeout or retry count to pass.
        return {"temperature": 0, "max_tokens": 100, "stop": []}


def test_the_standard_unit_suite_is_collected() -> None:
    """The suite cannot vanish quietly: it is a module-level class pytest collects, with the suite's tests."""
    suite = TestChatStarsStandard
    assert issubclass(suite, ChatModelUnitTests) and suite.__name__.startswith("Test")
    assert getattr(suite, "__test__", True) is not False
    tests = {name for name in dir(suite) if name.startswith("test_") and callable(getattr(suite, name))}
    assert {"test_init", "test_init_streaming", "test_bind_tool_pydantic", "test_serdes"} <= tests, sorted(tests)
    assert len(tests) >= 10, sorted(tests)
