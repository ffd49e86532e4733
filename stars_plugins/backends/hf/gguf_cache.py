"""Dequantized GGUF policies kept on disk, so that a GGUF file is converted once per machine.

transformers parses and dequantizes a GGUF file on every load: the embedded 93 MB SmolLM2 file
takes about 20 s on 2 CPU cores (the file is parsed three times, for the config, the tokenizer and
the weights). Every `stars serve`, `stars` command and test process paid that. The first load now
saves the converted model and tokenizer as a transformers folder (safetensors, in the dtype that
was loaded: about 540 MB for the embedded policy in float32) and later loads read that folder in
about a second, bit for bit the same weights and tokenizer.

The folder lives under `$STARS_GGUF_CACHE`, default `$XDG_CACHE_HOME/stars-plugins/gguf` (that is
`~/.cache/stars-plugins/gguf`); `STARS_GGUF_CACHE=off` turns it off. Its name is keyed on the GGUF
file's path, size and modification time, the dtype and the transformers version, so a changed file
or a transformers upgrade converts again. A folder that cannot be written (read-only home, full
disk) only costs the next load the conversion: loading never fails because of the cache.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_OFF = {"0", "off", "false", "no", "none"}
_MARKER = "stars-gguf-source.json"  # written last: a folder without it is incomplete


def cache_root() -> Path | None:
    value = os.environ.get("STARS_GGUF_CACHE", "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "stars-plugins" / "gguf"


def converted_folder(gguf_path: str | os.PathLike[str], dtype: Any) -> Path | None:
    """Where the conversion of `gguf_path` loaded in `dtype` is (or will be) kept; None when the
    cache is off or the file does not exist locally."""
    root = cache_root()
    path = Path(gguf_path)
    if root is None or not path.is_file():
        return None
    import transformers

    stat = path.stat()
    identity = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(dtype), transformers.__version__]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    return root / f"{path.stem}-{digest}"


def is_complete(folder: Path | None) -> bool:
    return folder is not None and (folder / _MARKER).is_file()


def save_converted(folder: Path, model: Any, tokenizer: Any, gguf_path: str | os.PathLike[str]) -> None:
    """Write the converted model into `folder`: into a temporary sibling first, renamed when
    complete, so a reader never sees half a folder and two processes converting at once both
    succeed (one rename wins). Failures are logged, never raised."""
    temporary: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        _save_weights(model, temporary)
        tokenizer.save_pretrained(temporary)
        (temporary / _MARKER).write_text(json.dumps({"gguf": str(Path(gguf_path).resolve())}) + "\n")
        _readable_by_all(temporary)
        os.rename(temporary, folder)
        temporary = None
    except Exception as exc:  # another process renamed first, the disk is read-only or full, ...
        if not is_complete(folder):
            logger.warning("could not keep the converted GGUF model in %s: %s", folder, exc)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _readable_by_all(folder: Path) -> None:
    """mkdtemp makes the folder private; the cache is shared like any other (the umask decides)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for file in folder.iterdir():
        os.chmod(file, 0o666 & ~umask)


def _save_weights(model: Any, folder: Path) -> None:
    """The dequantized weights, config and generation config. `save_pretrained` refuses a model
    loaded from GGUF (it is flagged as quantized although its tensors are plain), so the parts are
    written directly; tied weights are stored once and tied again on load."""
    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


__all__ = ["cache_root", "converted_folder", "is_complete", "save_converted"]
