"""Engine-cost benchmarks (issue 11): `stars bench --overhead` and `stars bench --reward-cache`.

`--overhead`: a tiny Llama built from a config (so that the engine's own costs, sampler included,
dominate as they do for a real model on a GPU) with the embedded policy's tokenizer and vocabulary,
an accept-all reward, STARS against transformers' `generate` on the same left-padded batch, for
every top-k x top-p combination, side by side in one run. With a constraint (`--json-schema FILE`,
`--regex` ...), STARS also runs with that constraint on every row, and the table adds the
constrained tokens/s and its ratio to the unconstrained run (the mask's cost, issue 18).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from stars_plugins.backends.hf.batch import left_padded
from stars_plugins.config import StarsConfig

OVERHEAD_SAMPLING = ((0, 1.0), (0, 0.9), (40, 1.0), (40, 0.9))


def _accept_all(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [1.0] * len(responses)


def embedded_tokenizer() -> Any:
    """The embedded policy's tokenizer alone (no weights): its vocabulary sizes the tiny model."""
    from transformers import AutoTokenizer

    from stars_plugins.model_source import policy_source

    source = policy_source(None)
    return AutoTokenizer.from_pretrained(source.location, **source.pretrained_kwargs())


def tiny_llama_policy(
    tokenizer: Any, device: str | torch.device, *, vocab_size: int | None = None, seed: int = 0
) -> Any:
    """A 2-layer, 64-wide Llama over the tokenizer's vocabulary (or `vocab_size`), random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from stars_plugins.backends.hf.policy import HFPolicy

    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(device).requires_grad_(False)
    return HFPolicy(model, tokenizer, name="tiny-llama (random, from a config)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generate_tokens(
    policy: Any, prepared: Sequence[Any], top_k: int, top_p: float, max_new_tokens: int, seed: int
) -> tuple[int, float]:
    """transformers' `generate` on the same left-padded batch: (tokens up to EOS, seconds)."""
    ids, mask = left_padded([p.token_ids for p in prepared], policy.pad_token_id)
    ids, mask = ids.to(policy.device), mask.to(policy.device)
    torch.manual_seed(seed)
    _sync(policy.device)
    start = time.perf_counter()
    out = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        temperature=1.0,
        top_k=top_k,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        pad_token_id=policy.pad_token_id,
    )
    _sync(policy.device)
    seconds = time.perf_counter() - start
    tokens = 0
    eos = set(policy.eos_token_ids)
    for row in out[:, ids.shape[1] :].tolist():
        for token in row:
            tokens += 1
            if token in eos:
                break
    return tokens, seconds


def run_overhead(
    batch_sizes: Sequence[int] = (32, 64),
    *,
    max_new_tokens: int = 128,
    horizon: int = 16,
    device: str | torch.device | None = None,
    sampling: Sequence[tuple[int, float]] = OVERHEAD_SAMPLING,
    tokenizer: Any = None,
    vocab_size: int | None = None,
    apply_chat_template: bool = True,
    progress: bool = True,
    constraint: Any = None,
) -> dict[str, Any]:
    """STARS vs `generate` tokens/s for every (batch size, top_k, top_p), measured alternately
    (and STARS with `constraint` on every row, when given). The tokenizer defaults to the
    embedded policy's (its vocabulary sizes the model)."""
    from tqdm.auto import tqdm

    from stars_plugins.benchmarks.strategies import builtin_prompts
    from stars_plugins.devices import resolve_device
    from stars_plugins.rewards.base import CallableReward
    from stars_plugins.runtime import StarsRuntime

    target = resolve_device(device)
    policy = tiny_llama_policy(
        tokenizer if tokenizer is not None else embedded_tokenizer(), target, vocab_size=vocab_size
    )
    runtime = StarsRuntime(policy, CallableReward(_accept_all, name="accept-all"))
    prompts = builtin_prompts()
    base = StarsConfig(
        strategy="stars",
        horizon=horizon,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        target_reward=0.0,
        acceptance="hard",
        seed=0,
        apply_chat_template=apply_chat_template,
    )
    runtime.generate(prompts[:2], base.updated(max_new_tokens=4))  # warm-up
    if constraint is not None:  # compiles the grammar once, outside the timings
        runtime.generate(prompts[:2], base.updated(max_new_tokens=4, constraint=constraint))
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
            constrained = {}
            if constraint is not None:
                _sync(target)
                start = time.perf_counter()
                fenced = runtime.generate(batch_prompts, config.updated(constraint=constraint))
                _sync(target)
                seconds = time.perf_counter() - start
                tokens = sum(r.stats.sampled_tokens for r in fenced)
                constrained = {
                    "constrained_tokens": tokens,
                    "constrained_seconds": round(seconds, 3),
                    "constrained_tokens_per_second": round(tokens / seconds, 1),
                    "constrained_ratio": round(tokens / seconds / stars_rate, 3),
                }
            rows.append(
                {
                    "batch": batch,
                    "top_k": top_k,
                    "top_p": top_p,
                    "stars_tokens": stars_tokens,
                    "stars_seconds": round(stars_seconds, 3),
                    "stars_tokens_per_second": round(stars_rate, 1),
                    "generate_tokens": gen_tokens,
                    "generate_seconds": round(gen_seconds, 3),
                    "generate_tokens_per_second": round(gen_rate, 1),
                    "ratio": round(stars_rate / gen_rate, 3),
                    **constrained,
                }
            )
    return {
        "device": _device_name(target),
        "model": policy.name,
        "vocab": policy.model.config.vocab_size,
        "max_new_tokens": max_new_tokens,
        "horizon": horizon,
        "rows": rows,
        "min_ratio": min(r["ratio"] for r in rows),
        **(
            {"constraint": constraint.describe(), "min_constrained_ratio": min(r["constrained_ratio"] for r in rows)}
            if constraint is not None
            else {}
        ),
        "table": overhead_table(rows),
    }


def overhead_table(rows: Sequence[dict[str, Any]]) -> str:
    fenced = bool(rows) and "constrained_ratio" in rows[0]
    head = "| batch | top_k | top_p | STARS tok/s | generate tok/s | STARS / generate |"
    rule = "|---:|---:|---:|---:|---:|---:|"
    if fenced:
        head += " STARS constrained tok/s | constrained / unconstrained |"
        rule += "---:|---:|"
    lines = [head, rule]
    for r in rows:
        line = (
            f"| {r['batch']} | {r['top_k']} | {r['top_p']} | {r['stars_tokens_per_second']:.1f} "
            f"| {r['generate_tokens_per_second']:.1f} | {r['ratio']:.2f} |"
        )
        if fenced:
            line += f" {r['constrained_tokens_per_second']:.1f} | {r['constrained_ratio']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------- reward-model prefix cache
def _long_texts() -> list[str]:
    """64 long, varied English responses: the embedded policy's own samples (from the reward's
    on-policy training pairs), six joined per text."""
    from importlib import resources

    from stars_plugins.jsonl import read_jsonl

    path = resources.files("stars_plugins.benchmarks").joinpath("data", "long_responses.jsonl")
    with resources.as_file(path) as file:
        return [row["text"] for _, row in read_jsonl(file, what="bench data")]


def reward_cache_schedule(
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    horizon: int,
    candidates: int,
    reject: float,
    seed: int,
) -> list[list[tuple[int, str]]]:
    """Rounds of (request, candidate text) as STARS produces them: each round every unfinished
    request extends its accepted tokens by `horizon` policy tokens per candidate (decoded as a
    whole, as the decoding loop does); with probability `reject` all its candidates are rejected,
    else a random one is accepted (candidate 0 more often, as first-accepted-in-index-order does)."""
    import random

    rng = random.Random(seed)
    texts = _long_texts()
    streams = [tokenizer(texts[i % len(texts)], add_special_tokens=False)["input_ids"] for i in range(len(prompts))]
    offsets = [0] * len(prompts)  # where each request's next tokens come from in its stream
    accepted: list[list[int]] = [[] for _ in prompts]
    rounds: list[list[tuple[int, str]]] = []
    while any(len(a) < max_new_tokens for a in accepted):
        pairs, options = [], {}
        for i, stream in enumerate(streams):
            if len(accepted[i]) >= max_new_tokens:
                continue
            step = min(horizon, max_new_tokens - len(accepted[i]))
            options[i] = []
            for _ in range(candidates):
                start = offsets[i] % max(1, len(stream) - step)
                segment = stream[start : start + step]
                offsets[i] += step
                options[i].append(segment)
                pairs.append((i, tokenizer.decode(accepted[i] + segment, skip_special_tokens=True)))
        rounds.append(pairs)
        for i, segments in options.items():
            if rng.random() >= reject:
                accepted[i] += segments[0 if rng.random() < 0.6 else rng.randrange(len(segments))]
    return rounds


def run_reward_cache(
    *,
    batch: int = 16,
    max_new_tokens: int = 256,
    horizon: int = 16,
    candidates: int = 1,
    reject: float = 0.3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The reward phase of STARS rounds with and without the prefix cache, call by call alternately,
    on a causal reward model built from the embedded SmolLM2 weights with a fresh score head."""
    from stars_plugins.benchmarks.strategies import builtin_prompts
    from stars_plugins.devices import resolve_device
    from stars_plugins.models import embedded_policy_file
    from stars_plugins.rewards.causal import CausalLMReward
    from stars_plugins.rewards.registry import load_classifier_reward

    target = resolve_device(device)
    reward = load_classifier_reward(embedded_policy_file(), device=target)
    if not isinstance(reward, CausalLMReward):
        raise TypeError(f"expected the embedded model to load as a causal reward model, got {reward!r}")
    prompts = [builtin_prompts()[i % len(builtin_prompts())] for i in range(batch)]
    rounds = reward_cache_schedule(
        reward.tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        horizon=horizon,
        candidates=candidates,
        reject=reject,
        seed=seed,
    )
    report = time_reward_phase(reward, prompts, rounds, target, progress=progress)
    return {
        "reward_model": reward.name + " + fresh score head",
        "batch": batch,
        "max_new_tokens": max_new_tokens,
        "horizon": horizon,
        "candidates": candidates,
        "reject_probability": reject,
        **report,
    }


def time_reward_phase(
    reward: Any,
    prompts: Sequence[str],
    rounds: Sequence[Sequence[tuple[int, str]]],
    device: torch.device,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay R(prompt, "") and then `rounds` through `reward.score` (uncached) and
    `reward.score_keyed` (prefix cache), call by call alternately; time both, count tokens."""
    from tqdm.auto import tqdm

    calls = [[(i, "") for i in range(len(prompts))], *rounds]  # the first call: R(prompt, "") for thresholds
    reward.score_keyed([-1], prompts[:1], ["warm-up"])
    reward.release([-1])
    timing: dict[str, list[float]] = {"uncached": [], "cached": []}
    tokens: dict[str, list[int]] = {"uncached": [], "cached": []}
    worst = 0.0
    for pairs in tqdm(calls, desc="reward rounds", disable=not progress, unit="round"):
        keys, texts = [i for i, _ in pairs], [t for _, t in pairs]
        ask = [prompts[i] for i in keys]
        _sync(device)
        start = time.perf_counter()
        plain = reward.score(ask, texts)
        _sync(device)
        timing["uncached"].append(time.perf_counter() - start)
        tokens["uncached"].append(sum(reward.last_tokens))
        start = time.perf_counter()
        cached = reward.score_keyed(keys, ask, texts)
        _sync(device)
        timing["cached"].append(time.perf_counter() - start)
        tokens["cached"].append(sum(reward.last_tokens))
        worst = max(worst, max(abs(a - b) for a, b in zip(plain, cached, strict=True)))
    reward.release(list(range(len(prompts))))
    pairs = [len(call) for call in calls]
    summary = reward_cache_summary(timing, tokens, pairs)
    ratio = summary["cached"]["reward_seconds"] / summary["uncached"]["reward_seconds"]
    return {
        "device": _device_name(device),
        "dtype": str(reward.model.dtype),
        "rounds": len(rounds),
        **summary,
        "time_ratio_cached_vs_uncached": round(ratio, 3),
        "max_abs_score_difference": worst,
        "pairs_per_call": pairs,
        "tokens_per_call": tokens,
        "seconds_per_call": {m: [round(t, 4) for t in v] for m, v in timing.items()},
        "table": reward_cache_table(summary, ratio),
    }


def reward_cache_summary(
    timing: dict[str, list[float]], tokens: dict[str, list[int]], pairs: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Totals per mode, and reward-model tokens per scored pair early and late in the responses
    (the first and last quarter of the rounds after the R(prompt, "") call)."""
    rounds = len(pairs) - 1
    quarter = max(1, rounds // 4)
    early, late = range(1, 1 + quarter), range(len(pairs) - quarter, len(pairs))

    def per_pair(mode: str, calls: range) -> float:
        return sum(tokens[mode][i] for i in calls) / sum(pairs[i] for i in calls)

    return {
        mode: {
            "reward_seconds": round(sum(timing[mode]), 3),
            "reward_tokens": sum(tokens[mode]),
            "tokens_per_pair_first_quarter": round(per_pair(mode, early), 1),
            "tokens_per_pair_last_quarter": round(per_pair(mode, late), 1),
        }
        for mode in timing
    }


def reward_cache_table(summary: dict[str, dict[str, Any]], ratio: float) -> str:
    lines = [
        "| reward phase | seconds | reward-model tokens | tokens per candidate, first quarter of rounds "
        "| tokens per candidate, last quarter |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, s in summary.items():
        lines.append(
            f"| {mode} | {s['reward_seconds']:.1f} | {s['reward_tokens']} "
            f"| {s['tokens_per_pair_first_quarter']:.0f} | {s['tokens_per_pair_last_quarter']:.0f} |"
        )
    lines.append(f"\ncached / uncached reward time: {ratio:.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def run_speed_bench(args: Any, constraint: Any = None) -> int:
    """`stars bench --overhead` / `--reward-cache`: print the table, write the JSON report.
    `constraint`: with `--overhead`, STARS also runs with it on every row."""
    import json
    from pathlib import Path

    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    reports = {}
    if args.overhead:
        reports["overhead"] = run_overhead(
            sizes or ((32,) if constraint is not None else (32, 64)),
            max_new_tokens=args.max_new_tokens,
            horizon=args.horizon,
            device=args.device,
            progress=not args.no_progress,
            constraint=constraint,
        )
        print(reports["overhead"]["table"])
        overhead = reports["overhead"]
        print(f"\nslowest STARS / generate ratio: {overhead['min_ratio']}  ({overhead['device']})")
        if constraint is not None:
            print(f"slowest constrained / unconstrained STARS ratio: {overhead['min_constrained_ratio']}")
    if args.reward_cache:
        reports["reward_cache"] = run_reward_cache(
            batch=(sizes or [16])[0],
            max_new_tokens=args.max_new_tokens,
            horizon=args.horizon,
            candidates=args.candidates,
            seed=args.seed or 0,
            device=args.device,
            progress=not args.no_progress,
        )
        print(reports["reward_cache"]["table"])
    for name, report in reports.items():
        output = Path(args.output).with_name(f"{name}.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        print(f"wrote {output}")
    return 0
