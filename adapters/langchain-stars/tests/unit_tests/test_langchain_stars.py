"""langchain-stars without a model: public names, settings, message conversion, unsupported features."""

from __future__ import annotations

import langchain_stars
import pytest
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool
from langchain_stars import SETTING_NAMES, ChatStars, StarsLLM
from langchain_stars.chat_models import to_chat_messages
from pydantic import BaseModel, Field

from stars_plugins import (
    ConfigError,
    GenerationResult,
    PromptError,
    StarsConfig,
    UnknownRewardError,
    available_rewards,
    calls,
)
from stars_plugins.errors import ToolSpecError
from stars_plugins.tools import InvalidToolCall, ToolCall


def test_public_names() -> None:
    assert sorted(langchain_stars.__all__) == [
        "CALL_KWARGS",
        "ChatStars",
        "SETTING_NAMES",
        "StarsLLM",
        "StarsSettings",
    ]
    assert issubclass(StarsLLM, BaseLLM) and issubclass(ChatStars, BaseChatModel)


def test_every_runtime_setting_is_a_field() -> None:
    """A setting added to StarsConfig must reach LangChain users too (as a field and a per-call kwarg)."""
    core_names = {calls.canonical_name(name) for name in SETTING_NAMES}
    assert core_names == set(StarsConfig.model_fields) and len(SETTING_NAMES) == len(core_names)
    for name in SETTING_NAMES:
        assert name in StarsLLM.model_fields and name in ChatStars.model_fields
    defaults = StarsLLM().stars_config()
    assert defaults == StarsConfig()


def test_invalid_settings_raise_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"horizon=0.*allowed: 1 <= horizon <= 1024"):
        StarsLLM(horizon=0)
    with pytest.raises(ConfigError) as reference:
        StarsConfig(max_new_tokens=0)
    with pytest.raises(ConfigError) as raised:  # `max_tokens` is an alias: the core's own message
        ChatStars(max_tokens=0)
    assert str(raised.value) == str(reference.value)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'; available: stars"):
        StarsLLM(strategy="nope")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'horizn'.*accepted:.*horizon"):  # not ignored
        StarsLLM(horizn=4)
    assert StarsLLM(max_new_tokens=5).max_tokens == 5 and ChatStars(stop=".").stop == (".",)  # one rule for stop


def test_unknown_reward_lists_the_available_ones() -> None:
    with pytest.raises(UnknownRewardError) as info:
        StarsLLM(reward="harmles")
    message = str(info.value)
    assert "'harmles'" in message
    for name in available_rewards():
        assert name in message


def test_chat_messages_become_template_turns() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage([{"type": "text", "text": "Hi "}, "there"]),
        AIMessage("Hello!"),
        ChatMessage(role="critic", content="Shorter."),
    ]
    assert to_chat_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "critic", "content": "Shorter."},
    ]
    image = HumanMessage([{"type": "image", "url": "https://example.com/cat.png"}])
    with pytest.raises(PromptError, match="text only"):
        to_chat_messages([image])


class Weather(BaseModel):
    """Get the weather in a city."""

    city: str = Field(description="City name")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_bind_tools_binds_openai_specs_and_the_core_tool_choice() -> None:
    chat = ChatStars()
    bound = chat.bind_tools([Weather, add, multiply], tool_choice="any")
    assert isinstance(bound, RunnableBinding) and bound.bound is chat
    specs = bound.kwargs["tools"]
    assert [s["function"]["name"] for s in specs] == ["Weather", "add", "multiply"]
    assert specs[1]["function"]["parameters"]["required"] == ["a", "b"]
    assert bound.kwargs["tool_choice"] == "required"
    # the bound settings are a valid call config: the core reads them as StarsConfig settings
    config = chat.stars_config(**bound.kwargs)
    assert [t.name for t in config.tools] == ["Weather", "add", "multiply"] and config.tool_choice == "required"

    spellings = [
        (None, None),
        ("auto", "auto"),
        ("none", "none"),
        ("any", "required"),
        ("required", "required"),
        (True, "required"),
        (False, "none"),
        ("add", "add"),
        ({"type": "function", "function": {"name": "add"}}, "add"),  # OpenAI's
        ({"type": "tool", "name": "Weather"}, "Weather"),  # Anthropic's
        ({"type": "any"}, "required"),
    ]
    for spelling, mode in spellings:
        kwargs = chat.bind_tools([Weather, add], tool_choice=spelling).kwargs
        assert kwargs.get("tool_choice") == mode, spelling
    bound = chat.bind_tools([add], parallel_tool_calls=False)
    assert bound.kwargs["parallel_tool_calls"] is False and "tool_choice" not in bound.kwargs


def test_bind_tools_rejects_what_it_cannot_run_at_bind_time() -> None:
    chat = ChatStars()
    with pytest.raises(ToolSpecError, match=r"'subtract'.*not among the bound tools \['add'\]"):
        chat.bind_tools([add], tool_choice="subtract")
    with pytest.raises(ToolSpecError, match="needs at least one bound tool"):
        chat.bind_tools([], tool_choice="any")
    with pytest.raises(ToolSpecError, match="provider built-in tool"):
        chat.bind_tools([{"type": "web_search_preview"}])
    with pytest.raises(ToolSpecError, match="parameters must be an object schema"):
        chat.bind_tools([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}])
    with pytest.raises(ConfigError, match="appear more than once"):  # at the call: see _tools.openai_tools
        chat.stars_config(**chat.bind_tools([add, add]).kwargs)
    assert isinstance(ToolSpecError("x"), ConfigError)


def test_agent_history_renders_as_openai_messages() -> None:
    """An AIMessage's tool calls (string or Anthropic-style list content) and the ToolMessage answering them."""
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "abc123", "type": "tool_call"}
    listed = AIMessage(
        [{"type": "text", "text": "Adding."}, {"type": "tool_use", "id": "abc123", "name": "add", "input": {"a": 1}}],
        tool_calls=[call],
    )
    messages = [
        HumanMessage("What is 1 + 2?"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("3", tool_call_id="abc123", name="add"),
        listed,
        ToolMessage("Error: missing b", tool_call_id="abc123", status="error"),
    ]
    openai_call = {"id": "abc123", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    assert to_chat_messages(messages) == [
        {"role": "user", "content": "What is 1 + 2?"},
        {"role": "assistant", "content": "", "tool_calls": [openai_call]},
        {"role": "tool", "content": "3", "tool_call_id": "abc123", "name": "add"},
        {"role": "assistant", "content": "Adding.", "tool_calls": [openai_call]},
        {"role": "tool", "content": "Error: missing b", "tool_call_id": "abc123"},
    ]
    # a tool_use block in a human message is not a call: still refused
    with pytest.raises(PromptError, match="'tool_use' content block"):
        to_chat_messages([HumanMessage([{"type": "tool_use", "id": "x", "name": "add", "input": {}}])])


def test_results_become_tool_calls_and_invalid_tool_calls() -> None:
    """The core's parsed calls -> AIMessage.tool_calls / invalid_tool_calls (the raw text and the reason kept)."""
    good = ToolCall(id="call_1", name="add", arguments={"a": 1, "b": 2})
    bad = InvalidToolCall(
        id="call_2", name="add", raw='<tool_call>{"name": "add", "arguments": {"a": "x"}}', error="bad"
    )
    result = GenerationResult(
        prompt="p",
        text='Sure. <tool_call>{"name": "add", ...}',
        token_ids=[],
        reward=0.5,
        finish_reason="tool_calls",
        strategy="stars",
        tool_calls=[good],
        invalid_tool_calls=[bad],
        content="Sure.",
    )
    message = ChatStars()._output([result], _FakeCall()).generations[0].message
    assert message.content == "Sure."
    assert message.tool_calls == [{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_1", "type": "tool_call"}]
    assert message.invalid_tool_calls == [
        {"name": "add", "args": bad.raw, "id": "call_2", "error": "bad", "type": "invalid_tool_call"}
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    blocks = [b["type"] for b in message.content_blocks]
    assert blocks == ["text", "tool_call"]  # LangChain lists invalid calls apart, in `invalid_tool_calls`


class _FakeCall:
    """What `_output` reads from a call: the model and reward names."""

    class runtime:
        model_name = "policy"

    reward_name = "reward"
