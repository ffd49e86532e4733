"""Shared fixtures. The embedded policy loads once per test process (about 4 s once its GGUF
conversion is kept on disk, about 22 s the first time on a machine: gguf_cache.py)."""

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


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POLICY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if _shares_module_setup(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # Grouped modules (the live servers among them) are the longest units of work: handed out first,
    # they do not leave one worker finishing a server module while the other sits idle.
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


def _shares_module_setup(item: pytest.Item) -> bool:
    """Whether the test uses one of this repository's module- or class-scoped fixtures (a live
    `stars serve`, a tiny model saved to a folder). `make test` runs tests on two workers with
    `--dist loadgroup`: such a module's tests stay on one worker, so its fixture is set up once; every
    other test goes where there is room. Plugins' fixtures (empty `baseid`) and cheap autouse guards
    named with a leading underscore do not count."""
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs if info is not None else {}
    return any(
        defs and defs[-1].scope in ("module", "class") and defs[-1].baseid and not name.startswith("_")
        for name, defs in definitions.items()
    )


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
