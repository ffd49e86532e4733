"""Prompt inputs: plain strings or chat messages, validated and turned into token ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def normalize_messages(prompt: Any, index: int) -> list[dict[str, str]]:
    """Validate a chat-message prompt; raise `PromptError` naming the prompt and message."""
    if isinstance(prompt, Mapping) or not isinstance(prompt, Sequence) or isinstance(prompt, bytes):
        raise PromptError(
            f"prompt {index} must be a string or a list of chat messages, got {type(prompt).__name__}"
        )
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
