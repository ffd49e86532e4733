"""Engine-cost benchmarks (issue 11): `stars bench --overhead` and `stars bench --reward-cache`.

`--overhead`: a tiny Llama built from a config (so that the engine's own costs, sampler included,
dominate as they do for a real model on a GPU) with the embedded policy's tokenizer and vocabulary,
an accept-all reward, STARS against transformers' `generate` on the same left-padded batch, for
every top-k x top-p combination, side by side in one run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.config import StarsConfig

OVERHEAD_SAMPLING = ((0, 1.0), (0, 0.9), (40, 1.0), (40, 0.9))


def _accept_all(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [1.0] * len(responses)


def embedded_tokenizer() -> Any:
    """The embedded policy's tokenizer alone (no weights): its vocabulary sizes the tiny model."""
    from transformers import AutoTokenizer

    from stars_plugins.policy.loader import policy_source

    source = policy_source(None)
    return AutoTokenizer.from_pretrained(source.location, **source.pretrained_kwargs())


def tiny_llama_policy(tokenizer: Any, device: str | torch.device, *, seed: int = 0) -> Any:
    """A 2-layer, 64-wide Llama over the tokenizer's full vocabulary, random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from stars_plugins.policy.hf import HFPolicy

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(device).requires_grad_(False)
    return HFPolicy(model, tokenizer, name="tiny-llama (random, from a config)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generate_tokens(policy: Any, prepared: Sequence[Any], top_k: int, top_p: float, max_new_tokens: int,
                     seed: int) -> tuple[int, float]:
    """transformers' `generate` on the same left-padded batch: (tokens up to EOS, seconds)."""
    longest = max(len(p.token_ids) for p in prepared)
    ids = torch.full((len(prepared), longest), policy.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prepared):
        ids[i, longest - len(p.token_ids):] = torch.tensor(p.token_ids)
        mask[i, longest - len(p.token_ids):] = 1
    ids, mask = ids.to(policy.device), mask.to(policy.device)
    torch.manual_seed(seed)
    _sync(policy.device)
    start = time.perf_counter()
    out = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=top_k,
                                top_p=top_p, max_new_tokens=max_new_tokens, pad_token_id=policy.pad_token_id)
    _sync(policy.device)
    seconds = time.perf_counter() - start
    tokens = 0
    eos = set(policy.eos_token_ids)
    for row in out[:, longest:].tolist():
        for token in row:
            tokens += 1
            if token in eos:
                break
    return tokens, seconds


def run_overhead(batch_sizes: Sequence[int] = (32, 64), *, max_new_tokens: int = 128, horizon: int = 16,
                 device: str | torch.device | None = None, sampling: Sequence[tuple[int, float]] = OVERHEAD_SAMPLING,
                 progress: bool = True) -> dict[str, Any]:
    """STARS vs `generate` tokens/s for every (batch size, top_k, top_p), measured alternately."""
    from tqdm.auto import tqdm

    from stars_plugins.bench import builtin_prompts
    from stars_plugins.policy.loader import resolve_device
    from stars_plugins.rewards.base import CallableReward
    from stars_plugins.runtime import StarsRuntime

    target = resolve_device(device)
    policy = tiny_llama_policy(embedded_tokenizer(), target)
    runtime = StarsRuntime(policy, CallableReward(_accept_all, name="accept-all"))
    prompts = builtin_prompts()
    base = StarsConfig(strategy="stars", horizon=horizon, max_new_tokens=max_new_tokens, temperature=1.0,
                       target_reward=0.0, acceptance="hard", seed=0)
    runtime.generate(prompts[:2], base.updated(max_new_tokens=4))  # warm-up
    rows = []
    cells = [(b, k, p) for b in batch_sizes for k, p in sampling]
    with tqdm(cells, desc="overhead", disable=not progress, unit="cell") as bar:
        for batch, top_k, top_p in bar:
            bar.set_postfix_str(f"batch {batch} top_k {top_k} top_p {top_p}")
            batch_prompts = [prompts[i % len(prompts)] for i in range(batch)]
            config = base.updated(top_k=top_k, top_p=top_p)
            prepared = policy.prepare(batch_prompts, config)
            gen_tokens, gen_seconds = _generate_tokens(policy, prepared, top_k, top_p, max_new_tokens, seed=0)
            _sync(target)
            start = time.perf_counter()
            results = runtime.generate(batch_prompts, config)
            _sync(target)
            stars_seconds = time.perf_counter() - start
            stars_tokens = sum(r.stats.sampled_tokens for r in results)
            stars_rate, gen_rate = stars_tokens / stars_seconds, gen_tokens / gen_seconds
            rows.append({"batch": batch, "top_k": top_k, "top_p": top_p,
                         "stars_tokens": stars_tokens, "stars_seconds": round(stars_seconds, 3),
                         "stars_tokens_per_second": round(stars_rate, 1),
                         "generate_tokens": gen_tokens, "generate_seconds": round(gen_seconds, 3),
                         "generate_tokens_per_second": round(gen_rate, 1),
                         "ratio": round(stars_rate / gen_rate, 3)})
    return {"device": _device_name(target), "model": policy.name, "vocab": len(policy.tokenizer),
            "max_new_tokens": max_new_tokens, "horizon": horizon, "rows": rows,
            "min_ratio": min(r["ratio"] for r in rows), "table": overhead_table(rows)}


def overhead_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| batch | top_k | top_p | STARS tok/s | generate tok/s | STARS / generate |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['top_k']} | {r['top_p']} | {r['stars_tokens_per_second']:.1f} "
              f"| {r['generate_tokens_per_second']:.1f} | {r['ratio']:.2f} |" for r in rows]
    return "\n".join(lines)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
