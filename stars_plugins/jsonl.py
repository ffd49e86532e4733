"""Reading the project's JSONL files (prompt sets, preference pairs) with errors that name file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_jsonl(
    path: str | Path, *, what: str = "file", error: type[ValueError] = ValueError
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ("path:line", object) for each non-blank line. A missing file raises FileNotFoundError
    naming it (`what` says what it is); a line that is not a JSON object raises `error`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row
