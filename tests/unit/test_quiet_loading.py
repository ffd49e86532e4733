"""Library use draws no loading bars: GGUF de-quantisation and weight loading are quiet during a
load, and the caller's own progress-bar setting is back afterwards."""

from __future__ import annotations

from transformers import modeling_gguf_pytorch_utils as gguf_utils
from transformers.utils import logging as hf_logging

from stars_plugins.quiet import quiet_loading


def test_loading_bars_are_off_during_a_load_and_restored_after(capfd):
    hf_logging.enable_progress_bar()
    original = gguf_utils.tqdm
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
        assert list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]
        assert list(hf_logging.tqdm(range(3), desc="Loading weights")) == [0, 1, 2]
    assert "de-quantizing" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled() and gguf_utils.tqdm is original


def test_a_caller_who_turned_bars_off_keeps_them_off():
    hf_logging.disable_progress_bar()
    try:
        with quiet_loading():
            pass
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
