"""langchain-stars without a model: public names, settings, message conversion, unsupported features."""

from __future__ import annotations

import langchain_stars
import pytest
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage
from langchain_stars import SETTING_NAMES, ChatStars, StarsLLM, ToolCallingNotSupportedError
from langchain_stars.chat_models import to_chat_messages

from stars_plugins import ConfigError, PromptError, StarsConfig, UnknownRewardError, available_rewards, calls


def test_public_names() -> None:
    assert sorted(langchain_stars.__all__) == [
        "CALL_KWARGS",
        "ChatStars",
        "SETTING_NAMES",
        "StarsLLM",
        "StarsSettings",
        "ToolCallingNotSupportedError",
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


def test_tool_calling_says_what_to_use_instead() -> None:
    chat = ChatStars()
    with pytest.raises(ToolCallingNotSupportedError) as info:
        chat.bind_tools([])
    assert isinstance(info.value, NotImplementedError)
    message = str(info.value)
    assert "not supported by STARS chat" in message  # what
    assert "with_structured_output" in message and "examples/langchain_agent_tool.py" in message  # instead
