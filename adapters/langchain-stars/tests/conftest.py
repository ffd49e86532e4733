"""Fixtures of langchain-stars' tests, for a run from this folder and for `make test` at the root.

`unit_tests/` never loads a model. Everything in `integration_tests/` runs the embedded policy
(SmolLM2-135M-Instruct) and is marked `slow` here, as is any test that uses the `runtime` fixture.
Test modules have no `__init__.py` (pytest's default import mode), so their file names must be unique
across the repository's one `make test` run: they carry the adapter's name.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

from stars_plugins import StarsRuntime

HERE = Path(__file__).resolve().parent
#: Fixtures that load the embedded policy: a test using one is marked `slow`.
POLICY_FIXTURES = {"runtime"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        if not path.is_relative_to(HERE):
            continue
        uses_policy = POLICY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_policy or path.is_relative_to(HERE / "integration_tests"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def runtime() -> StarsRuntime:
    """The embedded defaults: SmolLM2-135M-Instruct policy and the default reward."""
    return StarsRuntime.from_pretrained()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """On this 2-core machine, shared with other test runs, two OpenMP threads per process thrash: a
    3-prompt, 8-token batch took 29-50 s with 2 threads and about 1 s with 1. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
