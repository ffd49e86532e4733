"""Loading models without progress bars: a library call should not draw on its caller's terminal.

transformers draws a "Loading weights" bar for every model and, for GGUF files, a raw tqdm bar while
de-quantising that ignores its own switch. `quiet_loading()` turns both off for the duration of one
load and restores what was there before.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()  # the switches are process-wide: one quiet load at a time changes them


@contextmanager
def quiet_loading() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF support
        gguf_utils = None
    with _lock:
        bars_were_on = hf_logging.is_progress_bar_enabled()
        gguf_tqdm = getattr(gguf_utils, "tqdm", None)
        hf_logging.disable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
        try:
            yield
        finally:
            if gguf_tqdm is not None:
                gguf_utils.tqdm = gguf_tqdm
            if bars_were_on:
                hf_logging.enable_progress_bar()
