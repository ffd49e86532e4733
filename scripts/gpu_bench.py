#!/usr/bin/env python3
"""GPU throughput benchmark: STARS vs plain sampling vs CARDS-style segmentation at batch 1, 16, 64.

Builds, from configs (random weights: this measures throughput, not quality), a Llama-architecture
policy of about 1.1B parameters (TinyLlama's shape) and a Llama-architecture sequence-classification
reward model of about 300M, with a byte-level tokenizer made on the spot, so nothing is downloaded.
Prints a Markdown table (with the GPU's name) and writes JSON to $OUT (or --output).

    python scripts/gpu_bench.py                      # one H100: a few minutes
    python scripts/gpu_bench.py --tiny --device cpu  # a seconds-long smoke run of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends import HFPolicy
from stars_plugins.rewards import ClassifierReward

PROMPTS = [
    "Explain how a refrigerator keeps food cold.",
    "Write a short story about a lighthouse keeper.",
    "What are good habits for learning a new language?",
    "Describe the water cycle to a child.",
]


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 256 byte tokens plus specials, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{ch: i + 3 for i, ch in enumerate(sorted(alphabet))}}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def build(args: argparse.Namespace, tokenizer) -> StarsRuntime:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    vocab = 32000  # a realistic output layer; tokens above the byte range decode to nothing
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if args.tiny:
        policy_shape = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
        reward_shape = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
    else:  # TinyLlama-1.1B's shape; a 24-layer 1024-wide reward model (~0.3B)
        policy_shape = {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
        }
        reward_shape = {
            "hidden_size": 1024,
            "intermediate_size": 2816,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
        }
    torch.manual_seed(0)
    with torch.device(device):
        policy = LlamaForCausalLM(
            LlamaConfig(vocab_size=vocab, max_position_embeddings=4096, **ids, **policy_shape)
        ).to(dtype)
        reward = LlamaForSequenceClassification(LlamaConfig(vocab_size=vocab, num_labels=1, **ids, **reward_shape)).to(
            dtype
        )
    policy.generation_config.eos_token_id = None  # random weights: run every request to its budget
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e9  # noqa: E731
    print(f"policy {count(policy):.2f}B parameters, reward {count(reward):.2f}B, {dtype}, {device}", flush=True)
    runtime = StarsRuntime(
        HFPolicy(policy, tokenizer, name="llama-1.1b-random"),
        ClassifierReward(reward, tokenizer, name="llama-0.3b-rm-random", batch_size=64),
    )
    runtime.scheduler.configure(max_batch_rows=256)
    return runtime


def probe_entropy(runtime: StarsRuntime, quantile: float) -> float:
    """A quantile of next-token entropies along a short greedy run of the policy."""
    from stars_plugins.backends.sampling import entropy

    tokenizer, model = runtime.policy.tokenizer, runtime.policy.model
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"].to(model.device)
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=64, do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0
        )
    values = torch.cat([entropy(step) for step in out.scores]).float()
    return float(torch.quantile(values, quantile))


def probe_target(runtime: StarsRuntime, max_new_tokens: int) -> tuple[float, float]:
    """The median and standard deviation of the rewards of 16 plainly sampled responses."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(16)]
    config = StarsConfig(strategy="vanilla", max_new_tokens=max_new_tokens, seed=1, apply_chat_template=False)
    rewards = torch.tensor([r.reward for r in runtime.generate(prompts, config) if r.reward is not None])
    return float(rewards.median()), max(float(rewards.std()), 1e-3)


def measure(runtime: StarsRuntime, config: StarsConfig, batch: int, batches: int) -> dict:
    """`batches` consecutive batches of `batch` requests (different prompts where there are enough)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch * batches)]
    runtime.generate(prompts[:batch], config.updated(max_new_tokens=config.horizon))  # warm-up of this shape
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    results, start = [], time.perf_counter()
    for i in range(batches):
        results.extend(runtime.generate(prompts[i * batch : (i + 1) * batch], config))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    accepted = sum(r.stats.accepted_tokens for r in results)
    rejections = sum(r.stats.rejections for r in results)
    discarded = sum(r.stats.rejected_tokens for r in results)
    return {
        "strategy": config.strategy,
        "batch": batch,
        "requests": len(results),
        "tokens_per_second": round(accepted / wall, 1),
        "rejections": rejections,
        "discarded_per_rejection": round(discarded / rejections, 1) if rejections else 0.0,
        "wall_seconds": round(wall, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test of this script")
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--strategies", default="vanilla,stars,cards")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument(
        "--cards-quantile",
        type=float,
        default=0.9,
        help="CARDS entropy threshold as a quantile of the policy's own entropies",
    )
    parser.add_argument("--output", default=None, help="JSON path (default: $OUT/gpu_bench.json if $OUT is set)")
    parser.add_argument(
        "--skip-speed",
        action="store_true",
        help="skip the issue-11 parts: engine overhead at batch 64, reward-model prefix cache",
    )
    args = parser.parse_args()

    tokenizer = byte_tokenizer()
    runtime = build(args, tokenizer)
    # A random reward model has no known scale: the target is the median reward of sampled
    # responses and beta their standard deviation (soft acceptance on the reward's own scale), so
    # that a realistic share of segments is rejected, the same at every batch size. Random
    # logits are near-uniform, so CARDS' entropy threshold is set at a quantile of the entropies
    # this policy actually produces, giving segments of varying length as on a trained model.
    entropy = probe_entropy(runtime, args.cards_quantile)
    target, spread = probe_target(runtime, args.max_new_tokens)
    config = StarsConfig(
        horizon=args.horizon,
        max_new_tokens=args.max_new_tokens,
        seed=0,
        target_reward=target,
        beta=spread,
        apply_chat_template=False,
        max_rejections=20,
        entropy_threshold=entropy,
    )
    print(
        f"target reward {target:.4f}, beta {spread:.4f} (median and spread of 16 sampled responses); "
        f"CARDS entropy threshold {entropy:.3f} nats (quantile {args.cards_quantile})",
        flush=True,
    )
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        batches = 4 if batch == 1 else 1  # batch 1: four requests one after another
        for strategy in args.strategies.split(","):
            row = measure(runtime, config.for_strategy(strategy), batch, batches)
            rows.append(row)
            print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    table = [
        f"Device: {device_name}; policy {runtime.model_name}, reward {runtime.reward.name}; "
        f"K={args.horizon}, {args.max_new_tokens} new tokens, N=1",
        "",
        "| strategy | batch | accepted tok/s | rejections | discarded/rejection | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['strategy']} | {r['batch']} | {r['tokens_per_second']} | {r['rejections']} "
        f"| {r['discarded_per_rejection']} | {r['wall_seconds']} |"
        for r in rows
    ]
    print("\n".join(table))
    speed = {} if args.skip_speed else speed_benches(args, tokenizer)
    output = args.output or (os.path.join(os.environ["OUT"], "gpu_bench.json") if os.environ.get("OUT") else None)
    if output:
        Path(output).write_text(json.dumps({"device": device_name, "rows": rows, **speed}, indent=2))
    return 0


def speed_benches(args: argparse.Namespace, tokenizer) -> dict:
    """Issue 11 on this device: `stars bench --overhead` at batch 64 (a tiny Llama, STARS vs
    `generate`, top_k x top_p), and the reward phase of a ~1.1B causal reward model (TinyLlama's
    shape, random weights, bf16) with and without its prefix cache (16 requests, 256 new tokens)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from stars_plugins.benchmarks.speed import reward_cache_schedule, run_overhead, time_reward_phase
    from stars_plugins.rewards.causal import CausalLMReward

    device = torch.device(args.device)
    overhead = run_overhead(
        (4,) if args.tiny else (64,),
        max_new_tokens=16 if args.tiny else 128,
        device=device,
        tokenizer=tokenizer,
        vocab_size=32000,
        apply_chat_template=False,
        progress=False,
    )
    print("\nEngine overhead (tiny Llama from a config):\n" + overhead["table"], flush=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = (
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
        if args.tiny
        else {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
        }
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForSequenceClassification(
            LlamaConfig(vocab_size=32000, num_labels=1, bos_token_id=1, eos_token_id=2, pad_token_id=0, **shape)
        ).to(dtype)
    reward = CausalLMReward(model.requires_grad_(False), tokenizer, name="llama-1.1b-rm-random", batch_size=64)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(4 if args.tiny else 16)]
    rounds = reward_cache_schedule(
        tokenizer, prompts, max_new_tokens=32 if args.tiny else 256, horizon=16, candidates=1, reject=0.3, seed=0
    )
    cache = time_reward_phase(reward, prompts, rounds, device, progress=False)
    print("\nReward-model prefix cache (~1.1B causal reward model):\n" + cache["table"], flush=True)
    del reward, model
    return {"overhead": overhead, "reward_cache": cache}


if __name__ == "__main__":
    sys.exit(main())
