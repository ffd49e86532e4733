"""A local GGUF policy is dequantized once per machine: the first load keeps a transformers folder,
later loads read it and get the same weights, tokenizer, chat template and tokens (gguf_cache.py)."""

from __future__ import annotations

import pytest
import torch

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends import loader
from stars_plugins.backends.hf.gguf_cache import converted_folder, is_complete
from stars_plugins.model_source import policy_source
from stars_plugins.rewards.base import CallableReward

pytestmark = pytest.mark.slow  # converts the embedded GGUF file (about 20 s on 2 cores)

TEXTS = ['Hello world, 你好! <tool_call>\n{"name": 1}', "  tabs\tand\nnewlines 🙂", "The quick brown fox"]


def _load(source):
    return loader._load(source, torch.float32, None, None, None, False, None)


def test_the_embedded_gguf_is_converted_once_and_read_back_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("STARS_GGUF_CACHE", str(tmp_path / "cache"))
    source = policy_source(None)
    assert source.gguf_file
    folder = converted_folder(f"{source.location}/{source.gguf_file}", torch.float32)
    assert folder is not None and not is_complete(folder)

    converted = _load(source)  # parses the GGUF file, then keeps the conversion
    assert is_complete(folder)
    read_back = _load(source)
    assert read_back.model.name_or_path == str(folder)  # not the GGUF file
    assert read_back.name == converted.name  # the policy keeps its name

    first, second = converted.model.state_dict(), read_back.model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    for text in TEXTS:
        assert converted.tokenizer(text)["input_ids"] == read_back.tokenizer(text)["input_ids"]
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    render = {"tokenize": False, "add_generation_prompt": True}
    assert converted.tokenizer.apply_chat_template(chat, **render) == read_back.tokenizer.apply_chat_template(
        chat, **render
    )
    assert converted.eos_token_ids == read_back.eos_token_ids

    config = StarsConfig(strategy="vanilla", max_new_tokens=12, seed=3)
    prompt = ["Give me one tip for sleeping well."]
    reward = CallableReward(lambda prompts, responses: [0.0] * len(responses))
    assert (
        StarsRuntime(converted, reward=reward).generate(prompt, config)[0].token_ids
        == StarsRuntime(read_back, reward=reward).generate(prompt, config)[0].token_ids
    )
