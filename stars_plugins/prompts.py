"""Prompt inputs: plain strings or chat messages, validated and turned into token ids.

`PromptRenderer` is the one place where prompts become token ids and the context window is checked;
every policy backend reuses it with its own tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stars_plugins.errors import PromptError, PromptTooLongError
from stars_plugins.text import check_text
from stars_plugins.tools.render import ToolPrompt, has_tool_content, render_with_tools

#: A prompt is a string or a list of chat messages ({"role": ..., "content": ...}).
PromptInput = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt ready for the batch: its token ids, and the text the reward model sees as the prompt."""

    index: int
    original: PromptInput
    token_ids: tuple[int, ...]
    reward_prompt: str
    truncated: bool = False
    response_prefix: str = ""  # text written for the model after the prompt (a required call's opening)
    tool_parser: str | None = None  # the format this request's tool calls are read in (None: no tools)


@dataclass(frozen=True)
class RenderedPrompt:
    """One prompt rendered: token ids for the policy, the reward's prompt text, and what the
    response is read with (see `PreparedPrompt`)."""

    token_ids: list[int]
    reward_prompt: str
    response_prefix: str = ""
    tool_parser: str | None = None


def prompt_list(prompts: Any) -> list[PromptInput]:
    """The prompts of a call as a list (a single string is one prompt), each checked by `check_prompt`."""
    if isinstance(prompts, str):
        items: list[Any] = [prompts]
    elif (
        prompts is None
        or isinstance(prompts, bytes | bytearray | memoryview | Mapping)
        or not isinstance(prompts, Iterable)
    ):
        raise PromptError(
            f"prompts must be a string or a list of prompts (strings or chat-message lists), got {_kind(prompts)}"
        )
    else:
        items = list(prompts)
    for index, prompt in enumerate(items):
        check_prompt(prompt, index)
    return items


def check_prompt(prompt: Any, index: int = 0) -> None:
    """Raise `PromptError` for what cannot be a prompt: None, bytes, numbers, an empty string, text
    that is not valid Unicode. Chat-message lists are checked in full by `normalize_messages`."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptError(f"prompt {index} is empty; pass some text to respond to")
        _check_text(prompt, f"prompt {index}")
        return
    messages = normalize_messages(prompt, index)
    for position, message in enumerate(messages):
        _check_text(message["content"] or "", f"prompt {index}, message {position}")


def _check_text(text: str, what: str) -> None:
    try:
        check_text(text, what)
    except ValueError as exc:
        raise PromptError(str(exc)) from None


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes (decode them to str first, e.g. data.decode('utf-8'))"
    return type(value).__name__


@dataclass(frozen=True)
class PromptOptions:
    """The settings that shape a prompt (a slice of `StarsConfig`)."""

    apply_chat_template: bool = True
    system_prompt: str | None = None
    truncate_prompt: bool = False
    max_new_tokens: int = 128
    context_window: int | None = None  # a window below the model's that the caller enforces (None: the model's)
    tools: ToolPrompt = dataclasses.field(default_factory=ToolPrompt)

    @classmethod
    def of(cls, config: Any, context_window: int | None = None) -> PromptOptions:
        """The prompt options of a `StarsConfig` (or of anything with the same attributes)."""
        if isinstance(config, PromptOptions):
            return config if context_window is None else dataclasses.replace(config, context_window=context_window)
        return cls(
            apply_chat_template=config.apply_chat_template,
            system_prompt=config.system_prompt,
            truncate_prompt=config.truncate_prompt,
            max_new_tokens=config.max_new_tokens,
            context_window=context_window,
            tools=ToolPrompt(
                tuple(getattr(config, "tools", ())),
                getattr(config, "tool_choice", "auto"),
                getattr(config, "tool_parser", None),
                getattr(config, "parallel_tool_calls", True),
                getattr(config, "constraint", None) is not None,
            ),
        )


class PromptRenderer:
    """Renders prompts with a tokenizer (chat template or plain text) and checks that each one fits
    the context window together with its token budget."""

    def __init__(self, tokenizer: Any, name: str, context_window: int):
        self.tokenizer = tokenizer
        self.name = name
        self.context_window = context_window

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: PromptInput, options: PromptOptions, index: int = 0) -> tuple[list[int], str]:
        """Token ids for the policy and the prompt text for the reward model."""
        rendered = self.render_prompt(prompt, options, index)
        return rendered.token_ids, rendered.reward_prompt

    def render_prompt(self, prompt: PromptInput, options: PromptOptions, index: int = 0) -> RenderedPrompt:
        """The prompt rendered, with the tools of `options` (docs/tools.md) where it has any."""
        options = PromptOptions.of(options)
        if isinstance(prompt, str):
            if not prompt.strip():
                raise PromptError(f"prompt {index} is empty; pass some text to respond to")
            messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
            reward_prompt = prompt
        else:
            messages = normalize_messages(prompt, index)
            reward_prompt = reward_prompt_text(messages)
        system = options.system_prompt
        if system and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]

        tools = options.tools
        if tools.active or has_tool_content(messages):
            rendered = render_with_tools(
                self.tokenizer if options.apply_chat_template else _NoTemplate(), messages, tools
            )
            ids = self.tokenizer(rendered.text, add_special_tokens=not self._template_used(options))["input_ids"]
            parser = rendered.parser.name if tools.active else None
            return RenderedPrompt(list(ids), reward_prompt, rendered.response_prefix, parser)
        if options.apply_chat_template and self.has_chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        elif isinstance(prompt, str):
            text = f"{system}\n\n{prompt}" if system else prompt
            ids = self.tokenizer(text)["input_ids"]
        else:
            ids = self.tokenizer(plain_transcript(messages))["input_ids"]
        return RenderedPrompt(list(ids), reward_prompt)

    def _template_used(self, options: PromptOptions) -> bool:
        return options.apply_chat_template and self.has_chat_template

    def prepare(self, prompts: Sequence[PromptInput], options: PromptOptions) -> list[PreparedPrompt]:
        """Render every prompt and check it fits the context window with its token budget: the
        model's window, or the smaller one a caller enforces (`options.context_window`). This is
        the one place a request's length is checked."""
        options = PromptOptions.of(options)
        prepared = []
        new_tokens = options.max_new_tokens
        window = self.context_window
        if options.context_window is not None and options.context_window < window:
            window = options.context_window
        budget = window - new_tokens
        for index, prompt in enumerate(prompts):
            rendered = self.render_prompt(prompt, options, index)
            ids, reward_prompt = rendered.token_ids, rendered.reward_prompt
            truncated = False
            if len(ids) > budget:
                if not options.truncate_prompt or budget < 1:
                    raise PromptTooLongError(
                        f"prompt {index} has {len(ids)} tokens; with max_new_tokens={new_tokens} "
                        f"it needs {len(ids) + new_tokens}, but {self._window_text(window)}. Shorten the prompt, "
                        "lower max_new_tokens, or "
                        + (
                            "raise context_window."
                            if window < self.context_window
                            else "set truncate_prompt=True to keep the prompt's last tokens."
                        ),
                        index=index,
                        prompt_tokens=len(ids),
                        max_new_tokens=new_tokens,
                        limit=window,
                    )
                ids, truncated = ids[-budget:], True
            prepared.append(
                PreparedPrompt(
                    index, prompt, tuple(ids), reward_prompt, truncated, rendered.response_prefix, rendered.tool_parser
                )
            )
        return prepared

    def _window_text(self, window: int) -> str:
        if window < self.context_window:
            return (
                f"the context window is {window} tokens (context_window={window}; "
                f"{self.name} allows {self.context_window})"
            )
        return f"the context window of {self.name} is {window} tokens"


def normalize_messages(prompt: Any, index: int) -> list[dict[str, Any]]:
    """Validate a chat-message prompt (OpenAI's format: system, user, assistant with optional
    `tool_calls`, `tool` with `tool_call_id`); raise `PromptError` naming the prompt and message."""
    if isinstance(prompt, Mapping) or not isinstance(prompt, Sequence) or isinstance(prompt, bytes | bytearray):
        raise PromptError(f"prompt {index} must be a string or a list of chat messages, got {_kind(prompt)}")
    messages = []
    for position, message in enumerate(prompt):
        where = f"prompt {index}, message {position}"
        if not isinstance(message, Mapping) or "role" not in message:
            raise PromptError(f"{where}: a chat message is a mapping with 'role' and 'content'")
        role = str(message["role"])
        calls = message.get("tool_calls") or None
        content = message.get("content")
        if content is None and not (calls and role == "assistant"):
            raise PromptError(f"{where}: a chat message is a mapping with 'role' and 'content'")
        if content is not None and not isinstance(content, str):
            raise PromptError(f"{where}: content must be a string")
        normalized: dict[str, Any] = {"role": role, "content": content if content is not None else ""}
        if calls:
            if role != "assistant":
                raise PromptError(f"{where}: only assistant messages carry tool_calls")
            normalized["tool_calls"] = [_tool_call(call, f"{where}, tool call {i}") for i, call in enumerate(calls)]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise PromptError(f"{where}: a 'tool' message needs the 'tool_call_id' of the call it answers")
            normalized["tool_call_id"] = call_id
            if isinstance(message.get("name"), str):
                normalized["name"] = message["name"]
        messages.append(normalized)
    if not messages:
        raise PromptError(f"prompt {index} is an empty list of messages")
    if not any(m["content"].strip() or m.get("tool_calls") for m in messages):
        raise PromptError(f"prompt {index} has only empty messages")
    return messages


def _tool_call(call: Any, where: str) -> dict[str, Any]:
    """An assistant's tool call in OpenAI's form, arguments as a dict (templates want dicts)."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise PromptError(
            f'{where}: a tool call is {{"id": ..., "type": "function", "function": {{"name": ..., "arguments": ...}}}}'
        )
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise PromptError(f"{where}: arguments are not valid JSON ({exc.msg})") from None
    if not isinstance(arguments, Mapping):
        raise PromptError(f"{where}: arguments must be a JSON object")
    return {
        "id": str(call.get("id") or ""),
        "type": "function",
        "function": {"name": function["name"], "arguments": dict(arguments)},
    }


def reward_prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """What the reward model sees as the prompt: the user's turn, or the whole conversation
    (earlier tool calls written as `name(arguments)`)."""
    visible = [m for m in messages if m["role"] != "system"]
    if len(visible) == 1 and visible[0]["role"] == "user":
        return visible[0]["content"]
    return "\n".join(f"{m['role']}: {_turn_text(m)}" for m in visible)


def _turn_text(message: Mapping[str, Any]) -> str:
    calls = [
        f"{c['function']['name']}({json.dumps(c['function']['arguments'], ensure_ascii=False)})"
        for c in message.get("tool_calls", ())
    ]
    return " ".join([message["content"], *calls]).strip() if calls else message["content"]


def plain_transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """A chat rendered as text for policies without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


class _NoTemplate:
    """Stands for a tokenizer when the chat template is turned off: tools render as plain text."""

    chat_template = None


class TokenizerSide:
    """The text side every policy backend shares: rendering through `self.renderer`, decoding and
    counting with `self.tokenizer`. A backend sets both attributes and inherits this."""

    tokenizer: Any
    renderer: PromptRenderer

    @property
    def has_chat_template(self) -> bool:
        return self.renderer.has_chat_template

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def render(self, prompt: PromptInput, options: PromptOptions, index: int = 0) -> tuple[list[int], str]:
        """Token ids for the policy and the prompt text for the reward model."""
        return self.renderer.render(prompt, options, index)

    def prepare(self, prompts: Sequence[PromptInput], options: PromptOptions) -> list[PreparedPrompt]:
        """Render every prompt and check it fits the context window with its token budget."""
        return self.renderer.prepare(prompts, options)

    def token_ids(self, text: str) -> list[int]:
        """`text` in the policy's tokens, no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.token_ids(text))
