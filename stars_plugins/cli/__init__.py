"""The `stars` command line (`stars generate | demo | bench | eval | serve`)."""

from stars_plugins.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
