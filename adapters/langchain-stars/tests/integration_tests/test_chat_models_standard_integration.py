"""langchain-tests' standard integration suite for `ChatStars`, on the embedded policy (SmolLM2-135M-Instruct).

Small budgets keep it fast: at most 64 new tokens (a whole tool call fits) in segments of 8, no resampling
(`max_rejections=0`). Tool calling and `tool_choice` are on: forced calls (`tool_choice="any"` or a
name) are decoded under the tools' JSON Schemas. The structured-output tests get the budget a whole
JSON joke needs (`structured_output_kwargs`), constrained to the schema token by token. The suite
skips, by its own switches, what `ChatStars` does not claim: JSON mode with a schema's keys
(`method="json_mode"` holds the output to any JSON object; which keys a 135M policy picks is up to
it), image / audio / PDF inputs, a per-call `model=` override and the VCR timing test.
`langchain_tests` is imported at module level: without it the run fails at collection instead of
passing without the suite.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_stars import ChatStars
from langchain_tests.integration_tests import ChatModelIntegrationTests

from stars_plugins import StarsRuntime
from stars_plugins.backends.scripted import ScriptedPolicy

#: What the embedded policy writes where it fails (seed 0, 64 tokens), for the xfail reasons.
AGENT_LOOP_OUTPUT = (
    "tool_choice='auto': the 135M policy writes no call but prose and Python: \"Here's a possible function "
    "call to get information about San Francisco, CA:\\n```python\\ndef get_weather_san_frca():\\n    return "
    '{"city": "San Francisco", "type": "geojson"}\\n```..." (finish_reason length)'
)
UNICODE_OUTPUT = (
    "tool_choice='any': the forced call starts right, then the 135M policy repeats itself until the budget: "
    '\'<tool_call>\\n{"name": "unicode_customer", "arguments": {"customer_name": "你好啊集团" ,"description": '
    "\"Hello & Team Galop & Team Apex & Team Apex & Team Apex & Team Apex &' (constraint_incomplete: an "
    "invalid_tool_call, not a tool call)"
)


class ChatStarsSuite(ChatModelIntegrationTests):
    """The suite's settings for `ChatStars`, shared by the embedded and the scripted runs (not collected)."""

    __test__ = False

    @property
    def chat_model_class(self) -> type[ChatStars]:
        return ChatStars

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"max_tokens": 64, "horizon": 8, "max_rejections": 0, "seed": 0}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        # A joke's setup and punchline as JSON: about 60-120 tokens from the embedded policy.
        return {"method": "json_schema", "max_tokens": 192, "horizon": 32}


class TestChatStarsIntegration(ChatStarsSuite):
    """The suite on the embedded policy (SmolLM2-135M-Instruct)."""

    __test__ = True

    # Two tests fail on the embedded 135M policy for its ability, not the software; both pass on the
    # scripted policy below (TestChatStarsScriptedIntegration), through the same code. Seeded outputs:
    @pytest.mark.xfail(reason=AGENT_LOOP_OUTPUT, strict=False)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(reason=UNICODE_OUTPUT, strict=False)
    def test_unicode_tool_call_integration(self, model: BaseChatModel, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, **kwargs)


def test_the_standard_integration_suite_is_collected() -> None:
    """The suite cannot vanish quietly: it is a module-level class pytest collects, with the suite's tests."""
    suite = TestChatStarsIntegration
    assert issubclass(suite, ChatModelIntegrationTests) and suite.__name__.startswith("Test")
    assert getattr(suite, "__test__", True) is not False
    tests = {name for name in dir(suite) if name.startswith("test_") and callable(getattr(suite, name))}
    expected = {"test_invoke", "test_ainvoke", "test_stream", "test_astream", "test_batch", "test_abatch"}
    assert expected | {"test_conversation", "test_usage_metadata", "test_stop_sequence"} <= tests, sorted(tests)
    assert len(tests) >= 30, sorted(tests)


# ---------------------------------------------------------------------- the same suite on a scripted policy
def _call(name: str, arguments: dict[str, Any]) -> str:
    """A call as the embedded policy's format (Hermes, the core's fallback) writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>"


#: What the scripted policy answers, by a phrase of the last user turn: the call a capable model makes.
SCRIPT = [
    ("magic_function(3)", _call("magic_function", {"input": 3})),
    ("magic_function_no_args()", _call("magic_function_no_args", {})),
    ("Pirate greeting", _call("greeting_generator", {"answer_style": "pirate"})),
    ("weather in San Francisco", _call("get_weather", {"location": "San Francisco, CA"})),
    ("你好啊集团", _call("unicode_customer", {"customer_name": "你好啊集团", "description": "A Chinese company"})),
    (
        "こんにちは株式会社",
        _call("unicode_customer", {"customer_name": "こんにちは株式会社", "description": "A company"}),
    ),
    ("Hello!", _call("magic_function", {"input": 1})),
    ("What is 3 + 4", _call("my_adder_tool", {"a": 3, "b": 4})),
]


def scripted_answer(prompt: str) -> str:
    """The answer to the rendered prompt (SmolLM2's template: turns open with `<|im_start|>role`)."""
    last_turn = prompt.rsplit("<|im_start|>", 2)[-2]
    if "<tool_response>" in last_turn or last_turn.startswith("tool"):
        return "The tool answered; that is the result."
    return next((answer for phrase, answer in SCRIPT if phrase in last_turn), "Hello! How can I help?")


@functools.cache
def scripted_runtime() -> StarsRuntime:
    """The embedded policy's tokenizer and chat template, with answers written by `scripted_answer`."""
    embedded = StarsRuntime.from_pretrained()
    return StarsRuntime(ScriptedPolicy(embedded.policy.tokenizer, scripted_answer), embedded.reward)


class TestChatStarsScriptedIntegration(ChatStarsSuite):
    """The suite on a policy that writes the calls a capable model writes: what fails on the embedded
    policy for its ability (a wrong argument value, no call under tool_choice="auto") passes here,
    through the same rendering, constraint, STARS loop, parsing and LangChain translation."""

    __test__ = True

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"runtime": scripted_runtime(), "max_tokens": 64, "horizon": 8, "max_rejections": 0, "seed": 0}

    @property
    def has_structured_output(self) -> bool:  # its script answers tool turns; the embedded run covers this
        return False
