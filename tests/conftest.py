"""Shared fixtures. The embedded policy loads once per test session (about 16 s on 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from stars_plugins import StarsRuntime
from tests.helpers.tiny_models import TINY_ARCHITECTURES, build_tiny_model

#: Fixtures that load the embedded policy: a test using one is marked `slow` automatically.
POLICY_FIXTURES = {"runtime", "policy", "tiny_model_dirs"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POLICY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def runtime() -> StarsRuntime:
    """The embedded defaults: SmolLM2-135M-Instruct policy and the default reward."""
    return StarsRuntime.from_pretrained()


@pytest.fixture(scope="session")
def policy(runtime: StarsRuntime):
    return runtime.policy


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, policy) -> dict[str, str]:
    """Tiny random Llama, Qwen2 and GPT-2 models saved to folders, loaded back by path in tests."""
    dirs = {}
    for arch in TINY_ARCHITECTURES:
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        build_tiny_model(arch, folder, policy.tokenizer)
        dirs[arch] = str(folder)
    return dirs
