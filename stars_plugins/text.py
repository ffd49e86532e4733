"""Checks on text that every entry point shares (prompts, system prompts, stop strings)."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, what: str) -> None:
    """Reject text that is not valid Unicode (a lone surrogate, e.g. from a bad JSON escape or a
    broken decode): tokenizers cannot encode it. Raises `ValueError`."""
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise ValueError(
            f"{what} contains a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start()}, which is "
            "not valid Unicode text; decode the source with errors='replace' or remove the character"
        )
