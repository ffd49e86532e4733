"""Lockstep batching with KV-cache reuse: greedy STARS must equal `model.generate(do_sample=False)`
for the same prompts in the same batch, whether segments are accepted at once or rejected first."""

from __future__ import annotations

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends.hf import batch as batch_module
from stars_plugins.backends.hf.batch import left_padded

PROMPTS = [
    "How do I bake bread?",
    "Tell me about the moon and its phases, in some detail please.",
    "Hi",
    "Write a haiku about rain.",
]


#: The embedded policy's greedy references, by (prompts, max_new_tokens): the tests below share one.
_references: dict[tuple, list[list[int]]] = {}


def reference_generate(policy, prompts, config):
    """What transformers' own generate returns for the same left-padded batch (computed once per policy,
    prompts and length: greedy decoding does not depend on the horizon or the rejection settings)."""
    key = (id(policy), tuple(prompts), config.max_new_tokens)
    if key not in _references:
        _references[key] = _reference_generate(policy, prompts, config)
    return _references[key]


def _reference_generate(policy, prompts, config):
    prepared = policy.prepare(prompts, config)
    ids, mask = left_padded([p.token_ids for p in prepared], policy.pad_token_id)
    out = policy.model.generate(
        input_ids=ids.to(policy.device),
        attention_mask=mask.to(policy.device),
        do_sample=False,
        max_new_tokens=config.max_new_tokens,
        pad_token_id=policy.pad_token_id,
    )
    texts = []
    for row in out[:, ids.shape[1] :].tolist():
        kept = []
        for token in row:
            if token in policy.eos_token_ids:
                break
            kept.append(token)
        texts.append(kept)
    return texts


def accept_all(prompts, responses):
    return [1.0] * len(responses)


class RejectFirstTries:
    """Rejects every new (prompt, response) pair the first `tries` times it is scored."""

    def __init__(self, tries: int):
        self.tries = tries
        self.seen: dict[tuple[str, str], int] = {}
        self.rejected = 0

    def __call__(self, prompts, responses):
        scores = []
        for pair in zip(prompts, responses, strict=True):
            self.seen[pair] = self.seen.get(pair, 0) + 1
            ok = self.seen[pair] > self.tries or pair[1] == ""
            self.rejected += not ok
            scores.append(1.0 if ok else -1.0)
        return scores


#: 30 new tokens: 6 segments of 5, and a cut last segment for horizons 16 and 8 (one reference for all).
LENGTH = 30
# top_k=1 keeps only the most likely token: greedy tokens, while STARS still resamples a rejected
# segment (temperature=0 would switch greedy mode on, which keeps a rejected segment at once).
GREEDY = {"temperature": 1.0, "top_k": 1, "target_reward": 0.0, "acceptance": "hard"}


@pytest.mark.parametrize("horizon", [5, 16])
def test_greedy_stars_equals_generate_when_everything_is_accepted(runtime, horizon):
    config = StarsConfig(horizon=horizon, max_new_tokens=LENGTH, **GREEDY)
    expected = reference_generate(runtime.policy, PROMPTS, config)
    results = runtime.generate(PROMPTS, config, reward=accept_all)
    assert [r.token_ids for r in results] == expected
    assert all(r.stats.rejections == 0 for r in results)


def test_greedy_stars_equals_generate_after_rejections(runtime):
    config = StarsConfig(horizon=8, max_new_tokens=LENGTH, max_rejections=5, **GREEDY)
    expected = reference_generate(runtime.policy, PROMPTS, config)
    judge = RejectFirstTries(2)
    results = runtime.generate(PROMPTS, config, reward=judge)
    assert [r.token_ids for r in results] == expected
    assert judge.rejected > 0
    for r in results:  # greedy resampling repeats the candidate, so each segment is rejected twice
        assert all(s.rejections in (0, 2) for s in r.segments)
        assert sum(s.rejections for s in r.segments) == r.stats.rejections > 0
        assert r.stats.forced_accepts == 0


def test_greedy_stars_equals_generate_with_compaction_forced(runtime, monkeypatch):
    """Squeezing holes out of the cache after every round must not change a single token."""
    compactions = []
    original = batch_module.LockstepBatch.compact

    def always(self, min_holes=1, min_fraction=0.0):
        compactions.append(original(self, min_holes=1, min_fraction=0.0))
        return compactions[-1]

    monkeypatch.setattr(batch_module.LockstepBatch, "compact", always)
    config = StarsConfig(horizon=6, max_new_tokens=LENGTH, max_rejections=5, **GREEDY)
    expected = reference_generate(runtime.policy, PROMPTS, config)
    results = runtime.generate(PROMPTS, config, reward=RejectFirstTries(1))
    assert [r.token_ids for r in results] == expected
    assert any(compactions)


def test_forced_best_candidate_from_an_earlier_round_is_replayed_exactly(runtime):
    """With N=1 and max_rejections=3, a segment whose first try scored best is forced after the
    third rejection: its tokens are re-fed, and greedy output still equals generate."""
    config = StarsConfig(horizon=8, max_new_tokens=24, max_rejections=3, **GREEDY)
    expected = reference_generate(runtime.policy, PROMPTS[:2], config)

    def never(prompts, responses):
        return [-1.0 if r else 1.0 for r in responses]

    results = runtime.generate(PROMPTS[:2], config, reward=never)
    assert [r.token_ids for r in results] == expected
    assert all(r.stats.forced_accepts == r.stats.segments for r in results)
    assert all(s.forced and s.rejections == 3 for r in results for s in r.segments)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_other_architectures_match_generate(tiny_model_dirs, arch):
    rt = StarsRuntime.from_pretrained(tiny_model_dirs[arch])
    config = StarsConfig(horizon=4, max_new_tokens=20, max_rejections=4, **GREEDY)
    prompts = ["hello there", "a much longer prompt with quite a few more words in it", "x"]
    expected = reference_generate(rt.policy, prompts, config)
    assert [r.token_ids for r in rt.generate(prompts, config, reward=accept_all)] == expected
    assert [r.token_ids for r in rt.generate(prompts, config, reward=RejectFirstTries(1))] == expected


def test_n_candidates_take_the_first_accepted_in_index_order(tiny_model_dirs):
    """Sampled candidates: the accepted segment is always the lowest-index candidate that passes."""
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    seen_batches = []

    def alternate(prompts, responses):
        seen_batches.append(list(responses))
        return [float(len(r) % 2) for r in responses]  # accept responses of odd length

    config = StarsConfig(
        horizon=4,
        num_candidates=4,
        max_new_tokens=16,
        target_reward=1.0,
        acceptance="hard",
        alpha=1.0,
        seed=3,
        max_rejections=100,
    )
    [result] = rt.generate(["count with me"], config, reward=alternate)
    accepted_prefixes = set()
    for responses in seen_batches[1:]:  # the first call scores the empty response
        odd = [r for r in responses if len(r) % 2 == 1]
        if odd:
            accepted_prefixes.add(odd[0])
    texts_so_far = ["".join(s.text for s in result.segments[: i + 1]) for i in range(len(result.segments))]
    assert texts_so_far and set(texts_so_far) <= accepted_prefixes


def test_the_batch_cache_appends_decode_steps_in_place(runtime):
    """The embedded policy's cache layers are `GrowingLayer`s: a decode step writes into spare columns
    (no copy of the cache), and the tokens are those of `generate` (the tests above)."""
    from stars_plugins.backends.hf.kv_cache import GrowingLayer
    from stars_plugins.backends.sampling import RowSampling

    policy = runtime.policy
    prompt = policy.prepare(PROMPTS[:1], StarsConfig())[0].token_ids
    batch = policy.open_batch([prompt], [2], [RowSampling(1.0, 1, 1.0, seed=0, stream=i) for i in range(2)])
    layers = batch.cache.layers
    assert layers and all(type(layer) is GrowingLayer for layer in layers)
    batch.begin([0, 1], [4, 4])
    batch.advance(1)  # the first step grows the prefill's exact-size buffers once
    storage = layers[0].keys.untyped_storage().data_ptr()
    batch.advance(3)
    assert layers[0].keys.untyped_storage().data_ptr() == storage
    assert layers[0].get_seq_length() == len(prompt) + 4
