"""The GGUF conversion cache's rules, on a tiny model (no GGUF parsing): where a conversion is kept,
that it can be turned off, that a changed file converts again, and that a folder that cannot be
written never fails a load."""

from __future__ import annotations

import logging
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stars_plugins.backends.hf.gguf_cache import cache_root, converted_folder, is_complete, save_converted
from tests.helpers.tiny_models import build_tiny_model, tiny_tokenizer


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STARS_GGUF_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "stars-plugins" / "gguf"
    monkeypatch.setenv("STARS_GGUF_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    for off in ("off", "0", "false"):
        monkeypatch.setenv("STARS_GGUF_CACHE", off)
        assert cache_root() is None
        assert converted_folder(__file__, torch.float32) is None


def test_the_folder_changes_with_the_file_and_the_dtype(monkeypatch, tmp_path):
    monkeypatch.setenv("STARS_GGUF_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    assert converted_folder(gguf, torch.float32) is None  # no such file
    gguf.write_bytes(b"GGUF" + bytes(16))
    first = converted_folder(gguf, torch.float32)
    assert first is not None and first.parent == tmp_path / "cache" and first.name.startswith("m-")
    assert converted_folder(gguf, torch.float32) == first
    assert converted_folder(gguf, torch.bfloat16) != first
    os.utime(gguf, ns=(1, 1))  # the file was replaced
    assert converted_folder(gguf, torch.float32) != first


def test_a_kept_model_loads_back_with_the_same_weights(tmp_path):
    tokenizer = tiny_tokenizer()
    build_tiny_model("llama", tmp_path / "model", tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    folder = tmp_path / "cache" / "m-1234"
    save_converted(folder, model, tokenizer, tmp_path / "m.gguf")
    assert is_complete(folder)
    assert not [p for p in folder.parent.iterdir() if p != folder]  # no temporary folder left behind
    again = AutoModelForCausalLM.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert (
        AutoTokenizer.from_pretrained(folder)("the quick fox")["input_ids"] == tokenizer("the quick fox")["input_ids"]
    )
    save_converted(folder, model, tokenizer, tmp_path / "m.gguf")  # a second writer loses the rename quietly
    assert is_complete(folder)


def test_a_folder_that_cannot_be_written_costs_nothing_but_a_warning(tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache root should be")
    tokenizer = tiny_tokenizer()
    build_tiny_model("llama", tmp_path / "model", tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    with caplog.at_level(logging.WARNING):
        save_converted(blocked / "m-1234", model, tokenizer, tmp_path / "m.gguf")
    assert not is_complete(blocked / "m-1234")
    assert "could not keep the converted GGUF model" in caplog.text
