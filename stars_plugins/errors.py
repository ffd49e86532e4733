"""Exceptions a user can cause, each with a message that says what to do."""

from __future__ import annotations


class StarsError(Exception):
    """Base class of every error raised on purpose by stars-plugins."""


class ConfigError(StarsError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class PromptError(StarsError, ValueError):
    """A prompt cannot be generated from (empty, wrong type)."""


class PromptTooLongError(PromptError):
    """A prompt plus its token budget does not fit the policy's context window."""

    def __init__(self, message: str, *, index: int, prompt_tokens: int, max_new_tokens: int, limit: int):
        super().__init__(message)
        self.index = index
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.limit = limit


class ModelNotFoundError(StarsError, FileNotFoundError):
    """A model folder or file that was named does not exist (or cannot be loaded offline)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class UnknownRewardError(StarsError, ValueError):
    """A reward name is neither a built-in reward nor a model folder."""


class UnknownStrategyError(ConfigError):
    """A decoding strategy name is not registered (a `ConfigError`: it is a config value)."""


class RewardError(StarsError, RuntimeError):
    """The reward model failed or returned unusable scores for a request."""


class EngineError(StarsError, RuntimeError):
    """The engine thread caught something a reward or the policy should never raise (SystemExit,
    KeyboardInterrupt, ...): the requests it hit fail with this error and the engine keeps serving."""


class ServingError(StarsError, RuntimeError):
    """A serving engine (vLLM, SGLang, llama.cpp's server) failed a request or cannot be used."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class ServingUnavailableError(ServingError, ConnectionError):
    """A serving engine cannot be reached (refused, reset, timed out, or it answers 503)."""


class ConstraintError(ConfigError):
    """A structured-output constraint cannot be used: an invalid JSON Schema, a keyword the grammar
    engine cannot enforce, a regular expression or grammar that does not parse, an empty choice.
    Raised when the `Constraint` is built, before any model work."""
