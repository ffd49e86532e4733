"""Library use draws no loading bars: weight loading and GGUF de-quantisation are quiet during a load,
and the caller's own progress-bar setting is back afterwards. Each check first shows that the bar does
draw without `quiet_loading`, so a `quiet_loading` that does nothing fails."""

from __future__ import annotations

from transformers import AutoModelForCausalLM, LlamaConfig
from transformers import modeling_gguf_pytorch_utils as gguf_utils
from transformers.utils import logging as hf_logging

from stars_plugins.quiet import quiet_loading


def _load_tiny_model(folder) -> None:
    AutoModelForCausalLM.from_pretrained(folder)


def _draw_gguf_bar() -> None:
    assert list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2]


def test_a_real_load_draws_its_weight_bar_only_without_quiet_loading(tmp_path, capfd):
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    _load_tiny_model(tmp_path)
    assert "Loading weights" in capfd.readouterr().err  # the bar this test is about does draw
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
        _load_tiny_model(tmp_path)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    _load_tiny_model(tmp_path)
    assert "Loading weights" in capfd.readouterr().err  # and draws again afterwards


def test_the_gguf_dequantisation_bar_is_off_during_a_load_and_restored_after(capfd):
    hf_logging.enable_progress_bar()
    original = gguf_utils.tqdm
    _draw_gguf_bar()
    assert "de-quantizing" in capfd.readouterr().err
    with quiet_loading():
        _draw_gguf_bar()
    assert "de-quantizing" not in capfd.readouterr().err
    assert gguf_utils.tqdm is original
    _draw_gguf_bar()
    assert "de-quantizing" in capfd.readouterr().err


def test_a_caller_who_turned_bars_off_keeps_them_off():
    hf_logging.disable_progress_bar()
    try:
        with quiet_loading():
            pass
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
