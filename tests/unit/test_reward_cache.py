"""The causal reward model's prefix cache is exact: the same scores as reading every candidate from
scratch, over rounds with acceptances and rejections, for two architectures and a reward tokenizer
that cuts text differently from the policy's; and it runs only the new tokens."""

from __future__ import annotations

import random

import pytest
import torch

from stars_plugins.rewards.causal import CausalLMReward, supports_prefix_cache
from stars_plugins.rewards.classifier import ClassifierReward
from stars_plugins.rewards.registry import load_classifier_reward
from tests.helpers.tiny_models import build_tiny_runtime, tiny_tokenizer

CHAT = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}</s>\n{% endfor %}"
TEXT = (
    "the quick brown fox jumps over a lazy dog while counting one two three four five six seven "
    "eight nine ten; punctuation, numbers 1234 and unusual words like zyxwvut appear!"
)
WORDS = TEXT.split(" ")


def reward_model(arch: str, tokenizer, *, seed: int = 0):
    from transformers import LlamaConfig, LlamaForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

    config_cls, model_cls = {
        "llama": (LlamaConfig, LlamaForSequenceClassification),
        "qwen2": (Qwen2Config, Qwen2ForSequenceClassification),
    }[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = model_cls(config).float()
    with torch.no_grad():
        model.score.weight.mul_(100)  # scores of order 1, so that 1e-4 is a real tolerance
    return model


def chunk(rng: random.Random) -> str:
    """A policy segment: a few words cut at an arbitrary character, as another tokenizer decodes."""
    text = " " + " ".join(rng.choice(WORDS) for _ in range(4))
    return text[: rng.randint(3, len(text))]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("chat", [True, False])
def test_cached_scores_equal_uncached_over_rounds_with_rejections(arch, chat):
    tokenizer = tiny_tokenizer(vocab_size=420)  # not the tokenizer the "policy" text came from
    if chat:
        tokenizer.chat_template = CHAT
    reward = CausalLMReward(reward_model(arch, tokenizer), tokenizer, name=f"tiny-{arch}", batch_size=5)
    rng = random.Random(0)
    prompts = {"a": "count with me please", "b": "tell me about the lazy dog, and the fox too"}
    accepted = {key: "" for key in prompts}
    keys = list(prompts)
    start = reward.score_keyed(keys, [prompts[k] for k in keys], ["", ""])
    assert start == pytest.approx(reward.score([prompts[k] for k in keys], ["", ""]), abs=1e-4)
    cached_tokens = uncached_tokens = 0
    for round_index in range(14):
        candidates = {key: [accepted[key] + chunk(rng) for _ in range(3)] for key in keys}
        pairs = [(key, c) for key in keys for c in candidates[key]]
        rng.shuffle(pairs)  # a request's candidates need not be adjacent in the call
        cached = reward.score_keyed([k for k, _ in pairs], [prompts[k] for k, _ in pairs], [c for _, c in pairs])
        cached_tokens += sum(reward.last_tokens)
        fresh = reward.score([prompts[k] for k, _ in pairs], [c for _, c in pairs])
        uncached_tokens += sum(reward.last_tokens)
        assert cached == pytest.approx(fresh, abs=1e-4), f"round {round_index}"
        for key in keys:  # accept candidate 0, another one, or none (a rejection)
            choice = rng.choice([0, 0, 1, 2, None, None])
            if choice is not None:
                accepted[key] = candidates[key][choice]
    assert cached_tokens < 0.5 * uncached_tokens
    reward.release(["a"])
    assert set(reward.entries) == {"b"}


def test_tokens_per_round_stay_flat_as_the_response_grows():
    tokenizer = tiny_tokenizer(vocab_size=420)
    tokenizer.chat_template = CHAT
    reward = CausalLMReward(reward_model("llama", tokenizer), tokenizer, name="tiny")
    rng = random.Random(1)
    text, per_round = "", []
    for _ in range(20):
        candidates = [text + chunk(rng) for _ in range(2)]
        reward.score_keyed(["r", "r"], ["hello"] * 2, candidates)
        per_round.append(sum(reward.last_tokens))
        text = candidates[0]
    full = [len(reward.input_ids("hello", text))]
    assert max(per_round[5:]) <= max(per_round[:5]) + 6
    assert max(per_round[5:]) < full[0]


def test_loader_picks_the_cache_for_decoders_only(tmp_path):
    tokenizer = tiny_tokenizer(vocab_size=420)
    model = reward_model("qwen2", tokenizer)
    assert supports_prefix_cache(model)
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    loaded = load_classifier_reward(str(tmp_path / "rm"), device="cpu")
    assert isinstance(loaded, CausalLMReward)

    from transformers import BertConfig, BertForSequenceClassification

    encoder = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=1,
        )
    )
    assert not supports_prefix_cache(encoder)
    encoder.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")
    plain = load_classifier_reward(str(tmp_path / "enc"), device="cpu")
    assert type(plain) is ClassifierReward


def test_the_first_candidate_is_kept_even_when_a_requests_rows_span_two_chunks():
    from stars_plugins.rewards.causal import _common_prefix

    tokenizer = tiny_tokenizer(vocab_size=420)
    tokenizer.chat_template = CHAT
    reward = CausalLMReward(reward_model("llama", tokenizer), tokenizer, name="tiny", batch_size=2)
    first = ["the quick brown", "the quick red", "the lazy dog"]
    reward.score_keyed(["a"] * 3, ["hello"] * 3, first)
    assert reward.entries["a"].ids == reward.input_ids("hello", first[0])
    second = [first[0] + tail for tail in (" fox jumps", " fox sleeps", ", so quick")]
    reward.score_keyed(["a"] * 3, ["hello"] * 3, second)
    kept = reward.input_ids("hello", first[0])
    ids = [reward.input_ids("hello", text) for text in second]
    reuse = min(_common_prefix(kept, i) for i in ids)
    assert reuse > len(reward.input_ids("hello", "")) - 3  # more than the prompt is reused
    assert reward.last_tokens == [len(i) - reuse for i in ids]


def test_the_reward_cache_bench_replays_stars_rounds():
    from stars_plugins.benchmarks.speed import reward_cache_schedule, reward_cache_summary

    tokenizer = tiny_tokenizer(vocab_size=420)
    rounds = reward_cache_schedule(
        tokenizer, ["p0", "p1", "p2"], max_new_tokens=24, horizon=8, candidates=2, reject=0.3, seed=0
    )
    assert all(len([i for i, _ in r if i == request]) in (0, 2) for r in rounds for request in range(3))
    last_text = {i: text for r in rounds for i, text in r}
    for request in range(3):
        assert len(tokenizer(last_text[request], add_special_tokens=False)["input_ids"]) >= 16
    pairs = [3] + [len(r) for r in rounds]
    summary = reward_cache_summary({"a": [1.0] * len(pairs)}, {"a": [2 * p for p in pairs]}, pairs)
    assert summary["a"]["tokens_per_pair_first_quarter"] == summary["a"]["tokens_per_pair_last_quarter"] == 2


class Recording(CausalLMReward):
    """Adds up the tokens the reward model reports for every call, keyed or not."""

    total = 0

    def score(self, prompts, responses):
        scores = super().score(prompts, responses)
        self.total += sum(self.last_tokens)
        return scores

    def score_keyed(self, keys, prompts, responses):
        scores = super().score_keyed(keys, prompts, responses)
        self.total += sum(self.last_tokens)
        return scores


def test_generation_stats_count_the_reward_model_tokens(tmp_path):
    from stars_plugins import StarsConfig

    tiny_runtime = build_tiny_runtime(tmp_path)
    tokenizer = tiny_tokenizer(vocab_size=420)
    tokenizer.chat_template = CHAT
    reward = Recording(reward_model("qwen2", tokenizer), tokenizer, name="tiny-rm")
    config = StarsConfig(horizon=4, max_new_tokens=12, target_reward=-1e9, acceptance="hard", seed=0)
    [result] = tiny_runtime.generate(["count with me"], config, reward=reward)
    assert result.stats.reward_calls >= 2
    assert result.stats.reward_tokens == reward.total > 0
    uncached = Recording(reward.model, tokenizer, name="tiny-rm")
    uncached.score_keyed = None  # the decoding loop falls back to `score`
    [again] = tiny_runtime.generate(["count with me"], config, reward=uncached)
    assert again.token_ids == result.token_ids
    assert result.stats.reward_tokens < again.stats.reward_tokens == uncached.total
    [plain] = tiny_runtime.generate(["count with me"], config, reward=lambda p, r: [0.0] * len(r))
    assert plain.stats.reward_tokens == 0
