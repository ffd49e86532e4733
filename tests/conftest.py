"""Shared fixtures. The embedded policy loads once per test session (about 16 s on 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread per test process (and per `stars serve` it starts): on a 2-core machine shared with
# other work, torch's default of one thread per core spins at every barrier; test_lockstep's 40-token
# greedy batches took 176-248 s each that way at a load average of 12. Tests compare tokens and
# scores, never speed, so the thread count changes no assertion.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from stars_plugins import StarsRuntime
from tests.helpers.tiny_models import TINY_ARCHITECTURES, build_tiny_model

torch.set_num_threads(1)  # torch may already be loaded (by the adapters' conftest files) before this runs

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
def harmless_reward():
    """The built-in "harmless" reward (its sentence embedder loads in a few seconds). `load_reward` keeps
    built-ins cached, so this is the same object the `runtime` fixture scores with."""
    from stars_plugins.rewards import load_reward

    return load_reward("harmless")


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
