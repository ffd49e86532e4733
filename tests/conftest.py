"""Shared fixtures. The embedded policy loads once per test session (about 16 s on 2 cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from stars_plugins import StarsRuntime

#: Fixtures that load the embedded policy: a test using one is marked `slow` automatically.
POLICY_FIXTURES = {"runtime", "policy", "tiny_model_dirs"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POLICY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def runtime() -> StarsRuntime:
    """The embedded defaults: SmolLM2-135M-Instruct policy and the default reward."""
    return StarsRuntime.from_pretrained()


@pytest.fixture(scope="session")
def policy(runtime: StarsRuntime):
    return runtime.policy


TINY_ARCHITECTURES = ("llama", "qwen2", "gpt2")


def build_tiny_model(arch: str, folder, tokenizer, *, seed: int = 0) -> None:
    """Save a tiny random causal LM of `arch` with the embedded tokenizer to `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    vocab = len(tokenizer)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=32, n_layer=2, n_head=4, **ids)
    else:
        cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
        config = cls(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **ids,
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, policy) -> dict[str, str]:
    """Tiny random Llama, Qwen2 and GPT-2 models saved to folders, loaded back by path in tests."""
    dirs = {}
    for arch in TINY_ARCHITECTURES:
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        build_tiny_model(arch, folder, policy.tokenizer)
        dirs[arch] = str(folder)
    return dirs
