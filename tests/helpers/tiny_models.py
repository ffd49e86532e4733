"""Tiny random causal LMs built from a config (2 layers, hidden size 32): they load in about a second
and let unit tests run the real transformers backend without the embedded policy."""

from __future__ import annotations

import torch

from stars_plugins import StarsRuntime

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "count with me: one two three four five six seven eight nine ten",
    "a much longer prompt with quite a few more words in it, and punctuation!",
    "hello there, how are you today? I am fine, thank you.",
]


def tiny_tokenizer(vocab_size: int = 300):
    """A real byte-level BPE tokenizer trained in a few milliseconds (no download, no embedded policy)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


TINY_ARCHITECTURES = ("llama", "qwen2", "gpt2")


def build_tiny_model(arch: str, folder, tokenizer, *, seed: int = 0) -> None:
    """Save a tiny random causal LM of `arch` with the embedded tokenizer to `folder`."""
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


def build_tiny_runtime(folder) -> StarsRuntime:
    """A 2-layer Llama built from a config over `tiny_tokenizer()`, saved to `folder`, loaded by path."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # sharper logits than the random init, so that EOS and truncation matter
        model.lm_head.weight.mul_(40)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return StarsRuntime.from_pretrained(str(folder))
