"""Prompt inputs: plain strings or chat messages, validated and turned into token ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stars_plugins.config import check_text
from stars_plugins.errors import PromptError

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


def prompt_list(prompts: Any) -> list[PromptInput]:
    """The prompts of a call as a list (a single string is one prompt), each checked by `check_prompt`."""
    if isinstance(prompts, str):
        items: list[Any] = [prompts]
    elif prompts is None or isinstance(prompts, bytes | bytearray | memoryview | Mapping) or not isinstance(
        prompts, Iterable
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
        _check_text(message["content"], f"prompt {index}, message {position}")


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


def normalize_messages(prompt: Any, index: int) -> list[dict[str, str]]:
    """Validate a chat-message prompt; raise `PromptError` naming the prompt and message."""
    if isinstance(prompt, Mapping) or not isinstance(prompt, Sequence) or isinstance(prompt, bytes | bytearray):
        raise PromptError(f"prompt {index} must be a string or a list of chat messages, got {_kind(prompt)}")
    messages = []
    for position, message in enumerate(prompt):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise PromptError(
                f"prompt {index}, message {position}: a chat message is a mapping with 'role' and 'content'"
            )
        if not isinstance(message["content"], str):
            raise PromptError(f"prompt {index}, message {position}: content must be a string")
        messages.append({"role": str(message["role"]), "content": message["content"]})
    if not messages:
        raise PromptError(f"prompt {index} is an empty list of messages")
    if not any(m["content"].strip() for m in messages):
        raise PromptError(f"prompt {index} has only empty messages")
    return messages


def reward_prompt_text(messages: Sequence[Mapping[str, str]]) -> str:
    """What the reward model sees as the prompt: the user's turn, or the whole conversation."""
    visible = [m for m in messages if m["role"] != "system"]
    if len(visible) == 1 and visible[0]["role"] == "user":
        return visible[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in visible)


def plain_transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """A chat rendered as text for policies without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant:"])
