"""`stars serve`: STARS generation behind the OpenAI protocol (FastAPI + uvicorn).

    from stars_plugins.server import create_app     # needs the `serve` extra
    app = create_app(StarsRuntime.from_pretrained(), api_key="...")

Importing this package does not import FastAPI; `create_app` does.
"""

from __future__ import annotations

from typing import Any

from stars_plugins.server.errors import APIError
from stars_plugins.server.protocol import ServerLimits


def create_app(runtime: Any, **options: Any) -> Any:
    """See `stars_plugins.server.app.create_app`."""
    from stars_plugins.server.app import create_app as _create_app

    return _create_app(runtime, **options)


__all__ = ["APIError", "ServerLimits", "create_app"]
