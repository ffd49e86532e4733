"""llama-index-llms-stars without a model: package layout, settings, construction errors, observability."""

from __future__ import annotations

import llama_index
import llama_index.core
import llama_index.llms
import pytest
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.llms.stars import CALL_SETTINGS, StarsLLM

from stars_plugins import ConfigError, StarsConfig, UnknownRewardError, available_rewards, calls


def test_public_names_and_namespace_packages() -> None:
    import llama_index.llms.stars as package

    assert sorted(package.__all__) == ["CALL_SETTINGS", "StarsLLM", "StructuredOutputError"]
    assert CALL_SETTINGS is calls.CALL_SETTINGS
    assert issubclass(StarsLLM, FunctionCallingLLM) and StarsLLM.class_name() == "StarsLLM"
    # `llama_index` and `llama_index.llms` stay namespace packages (no __init__.py here): one would hide
    # llama-index-core and every other integration installed beside this one.
    assert getattr(llama_index, "__file__", None) is None and getattr(llama_index.llms, "__file__", None) is None
    assert llama_index.core.__file__ is not None


def test_every_runtime_setting_is_a_field() -> None:
    """A setting added to StarsConfig reaches LlamaIndex users without an adapter change."""
    assert set(StarsConfig.model_fields) <= set(StarsLLM.model_fields)
    defaults = StarsConfig()
    assert StarsLLM().config_settings() == {name: getattr(defaults, name) for name in StarsConfig.model_fields}
    assert StarsLLM(max_tokens=5).max_new_tokens == 5  # the alias the core accepts per call, as a field too


def test_invalid_engine_settings_fail_at_construction():
    with pytest.raises(ConfigError) as reference:
        StarsConfig(max_rejections=-1)
    with pytest.raises(ConfigError) as raised:
        StarsLLM(max_rejections=-1)
    assert str(raised.value) == str(reference.value)
    with pytest.raises(ConfigError, match="horizn"):
        StarsLLM(horizn=8)
    with pytest.raises(ConfigError, match="horizon"):
        StarsLLM(horizon="many")
    with pytest.raises(ConfigError, match="strategy"):
        StarsLLM(strategy="beam")


def test_unknown_reward_fails_at_construction_listing_the_available_ones() -> None:
    with pytest.raises(UnknownRewardError) as info:
        StarsLLM(reward="harmles")
    assert "'harmles'" in str(info.value)
    assert all(name in str(info.value) for name in available_rewards())


def test_observability_never_loads_the_model() -> None:
    llm = StarsLLM(max_new_tokens=20, horizon=8)
    payload = llm.to_payload()
    assert payload["model_name"] == calls.policy_label(None) and payload["class_name"] == "StarsLLM"
    assert payload["max_new_tokens"] == 20 and payload["horizon"] == 8
    assert llm._slot.loaded is None


# ---------------------------------------------------------------------- tools (FunctionCallingLLM)
def _add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_chat_with_tools_arguments_carry_openai_specs_and_the_core_tool_choice() -> None:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.tools import FunctionTool

    llm = StarsLLM()
    tools = [FunctionTool.from_defaults(_add, name="add"), FunctionTool.from_defaults(_multiply, name="multiply")]
    prepared = llm._prepare_chat_with_tools(
        tools, user_msg="What is 2 + 3?", chat_history=[ChatMessage(role="system", content="Be exact.")]
    )
    assert [m.role.value for m in prepared["messages"]] == ["system", "user"]
    assert [s["function"]["name"] for s in prepared["tools"]] == ["add", "multiply"]
    assert prepared["tool_choice"] == "auto" and prepared["parallel_tool_calls"] is False
    assert llm._prepare_chat_with_tools(tools, tool_required=True)["tool_choice"] == "required"
    assert llm._prepare_chat_with_tools(tools, tool_choice="multiply")["tool_choice"] == "multiply"
    named = {"type": "function", "function": {"name": "add"}}
    assert llm._prepare_chat_with_tools(tools, tool_choice=named)["tool_choice"] == "add"
    with pytest.raises(ConfigError, match=r"'divide'.*not among the tools \['add', 'multiply'\]"):
        llm._prepare_chat_with_tools(tools, tool_choice="divide")
    # the prepared arguments are a valid call config for the core
    settings = {k: v for k, v in prepared.items() if k != "messages"}
    config = StarsConfig(**settings)
    assert [t.name for t in config.tools] == ["add", "multiply"] and config.parallel_tool_calls is False


def test_agent_history_renders_as_openai_messages() -> None:
    """FunctionAgent's scratchpad: the assistant's ToolCallBlocks and the tool turn answering them."""
    from llama_index.core.base.llms.types import ChatMessage, TextBlock, ToolCallBlock
    from llama_index.llms.stars._tools import message_dict

    assistant = ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="Adding."),
            ToolCallBlock(tool_call_id="c1", tool_name="add", tool_kwargs={"a": 1, "b": 2}),
        ],
    )
    tool_turn = ChatMessage(role="tool", content="3", additional_kwargs={"tool_call_id": "c1", "name": "add"})
    legacy = ChatMessage(
        role="assistant",
        content="",
        additional_kwargs={
            "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}]
        },
    )
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    assert message_dict(assistant) == {"role": "assistant", "content": "Adding.", "tool_calls": [call]}
    assert message_dict(tool_turn) == {"role": "tool", "content": "3", "tool_call_id": "c1", "name": "add"}
    assert message_dict(legacy)["tool_calls"] == [
        {"id": "c2", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}
    ]


def test_tool_calls_come_back_as_tool_selections() -> None:
    from llama_index.core.base.llms.types import ChatResponse
    from llama_index.llms.stars._tools import response_message

    from stars_plugins.tools import InvalidToolCall, ToolCall

    llm = StarsLLM()
    calls_ = [ToolCall("c1", "add", {"a": 1, "b": 2}), ToolCall("c2", "multiply", {"a": 2, "b": 3})]
    bad = InvalidToolCall(
        "c3", "add", '<tool_call>{"name": "add", "arguments": {"a": "x"}}</tool_call>', "'b' is required"
    )
    response = ChatResponse(message=response_message("Let me compute.", calls_, [bad]))
    assert response.message.content == "Let me compute."
    selections = llm.get_tool_calls_from_response(response)
    assert [(s.tool_id, s.tool_name, s.tool_kwargs) for s in selections] == [
        ("c1", "add", {"a": 1, "b": 2}),
        ("c2", "multiply", {"a": 2, "b": 3}),
    ]
    assert response.message.additional_kwargs["invalid_tool_calls"][0]["error"] == "'b' is required"
    single = llm._validate_chat_with_tools_response(response, [], allow_parallel_tool_calls=False)
    assert [s.tool_name for s in llm.get_tool_calls_from_response(single)] == ["add"]
    # no valid call: an error that names the invalid one (raw text and reason), or [] when allowed
    only_bad = ChatResponse(message=response_message("", [], [bad]))
    with pytest.raises(ValueError, match=r"0 tool calls; invalid call .*'b' is required"):
        llm.get_tool_calls_from_response(only_bad)
    assert llm.get_tool_calls_from_response(only_bad, error_on_no_tool_call=False) == []
