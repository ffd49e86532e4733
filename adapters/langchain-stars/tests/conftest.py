"""Fixtures of langchain-stars' tests, for a run from this folder and for `make test` at the root.

`unit_tests/` never loads a model. Everything in `integration_tests/` runs the embedded policy
(SmolLM2-135M-Instruct) and is marked `slow` here, as is any test that uses the `runtime` fixture.
Test modules have no `__init__.py` (pytest's default import mode), so their file names must be unique
across the repository's one `make test` run: they carry the adapter's name.

The langchain-tests standard suites cannot vanish quietly: a standard module that is skipped, holds no
suite class, or whose suite collects fewer tests than it did when checked fails the collection.
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


#: Standard-suite modules: (their langchain-tests base class, the fewest tests it must collect). The
#: counts are what langchain-tests 1.1 collects for ChatStars (10 and 50), less room for small changes
#: in the suite between releases.
STANDARD_SUITES = {
    HERE / "unit_tests" / "test_chat_models_standard_unit.py": ("ChatModelUnitTests", 10),
    HERE / "integration_tests" / "test_chat_models_standard_integration.py": ("ChatModelIntegrationTests", 40),
}


def _standard_base(name: str) -> type:
    import langchain_tests.integration_tests
    import langchain_tests.unit_tests

    module = langchain_tests.unit_tests if name == "ChatModelUnitTests" else langchain_tests.integration_tests
    return getattr(module, name)


def _fail(report: pytest.CollectReport, message: str) -> None:
    report.outcome = "failed"
    report.longrepr = message


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Fail the collection of a standard-suite module that is skipped or brings too few tests."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    path = Path(collector.path) if getattr(collector, "path", None) else None
    if path not in STANDARD_SUITES or report.failed:
        return
    base_name, fewest = STANDARD_SUITES[path]
    if isinstance(collector, pytest.Module):
        if report.skipped:
            _fail(report, f"{path.name}: the langchain-tests standard suite was skipped; it must run")
            return
        base = _standard_base(base_name)
        suites = [c for c in report.result if isinstance(c, pytest.Class) and issubclass(c.obj, base)]
        if not suites:
            _fail(report, f"{path.name} collects no {base_name} subclass: the standard suite is gone")
    elif isinstance(collector, pytest.Class) and issubclass(collector.obj, _standard_base(base_name)):
        collected = len(report.result)
        if collected < fewest:
            _fail(report, f"{collector.name} collects {collected} standard tests, expected {fewest} or more")


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
