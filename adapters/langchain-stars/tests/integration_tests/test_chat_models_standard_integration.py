"""langchain-tests' standard integration suite for `ChatStars`, on the embedded policy (SmolLM2-135M-Instruct).

Small budgets keep it fast: 8 new tokens in segments of 4, no resampling (`max_rejections=0`); the
structured-output tests get the budget a whole JSON joke needs (`structured_output_kwargs`), constrained
to the schema token by token. The suite skips, by its own switches, what `ChatStars` does not claim:
tool calling, JSON mode with a schema's keys (`method="json_mode"` holds the output to any JSON object;
which keys a 135M policy picks is up to it), image / audio / PDF inputs, a per-call `model=` override
and the VCR timing test. `langchain_tests` is imported at module level: without it the run fails at
collection instead of passing without the suite.
"""

from __future__ import annotations

from typing import Any

from langchain_stars import ChatStars
from langchain_tests.integration_tests import ChatModelIntegrationTests


class TestChatStarsIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatStars]:
        return ChatStars

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"max_tokens": 8, "horizon": 4, "max_rejections": 0, "seed": 0}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        # A joke's setup and punchline as JSON: about 60-120 tokens from the embedded policy.
        return {"method": "json_schema", "max_tokens": 192, "horizon": 32}


def test_the_standard_integration_suite_is_collected() -> None:
    """The suite cannot vanish quietly: it is a module-level class pytest collects, with the suite's tests."""
    suite = TestChatStarsIntegration
    assert issubclass(suite, ChatModelIntegrationTests) and suite.__name__.startswith("Test")
    assert getattr(suite, "__test__", True) is not False
    tests = {name for name in dir(suite) if name.startswith("test_") and callable(getattr(suite, name))}
    expected = {"test_invoke", "test_ainvoke", "test_stream", "test_astream", "test_batch", "test_abatch"}
    assert expected | {"test_conversation", "test_usage_metadata", "test_stop_sequence"} <= tests, sorted(tests)
    assert len(tests) >= 30, sorted(tests)
