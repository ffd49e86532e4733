"""The batch sampler: right distribution for every truncation mode, no full sort where none is needed,
and per-row random streams that do not depend on what shares the batch."""

from __future__ import annotations

import pytest
import torch

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends.sampling import BatchSampler, RowSampling, splitmix64, splitmix64_reference
from tests.helpers.tiny_models import build_tiny_runtime


def reference_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Sort-based top-k then top-p (renormalised within top-k), as transformers' warpers do."""
    scaled = logits / temperature
    order = scaled.argsort(descending=True)
    values = scaled[order]
    if top_k > 0:
        values[top_k:] = float("-inf")
    probs = torch.softmax(values, -1)
    if top_p < 1:
        before = probs.cumsum(-1) - probs
        probs = torch.where(before <= top_p, probs, 0.0)
        probs = probs / probs.sum()
    out = torch.zeros_like(probs)
    out[order] = probs
    return out


def test_tensor_hash_matches_splitmix64():
    values = [0, 1, 2, 12345, -1, -(2**63), 2**63 - 1, 0x9E3779B97F4A7C15 - 2**64]
    got = splitmix64(torch.tensor(values, dtype=torch.long)).tolist()
    assert [v % 2**64 for v in got] == [splitmix64_reference(v % 2**64) for v in values]


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.8), (1.3, 4, 0.7)]
)
def test_draws_follow_the_truncated_distribution(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(8) * 1.5
    rows = 40_000  # one draw each, in one call: rows differ by seed
    sampler = BatchSampler([RowSampling(temperature, top_k, top_p, seed=s) for s in range(rows)], "cpu")
    tokens = sampler(logits.expand(rows, -1).clone())
    freq = torch.bincount(tokens, minlength=8).float() / rows
    expected = reference_probs(logits, temperature, top_k, top_p)
    assert freq[expected == 0].sum() == 0, "a truncated token was drawn"
    assert (freq - expected).abs().max() < 0.012


def test_mixed_rows_each_keep_their_own_truncation():
    torch.manual_seed(1)
    logits = torch.randn(6, 5000) * 3  # a vocabulary large enough for the radix nucleus
    settings = [
        RowSampling(0.0, 0, 1.0, 0),
        RowSampling(1.0, 1, 1.0, 1),
        RowSampling(1.0, 5, 1.0, 2),
        RowSampling(1.0, 0, 0.3, 3),
        RowSampling(1.0, 0, 1.0, 4),
        RowSampling(2.0, 8, 0.5, 5),
    ]
    sampler = BatchSampler(settings, "cpu")
    for _ in range(50):
        tokens = sampler(logits)
        for row, (token, s) in enumerate(zip(tokens.tolist(), settings, strict=True)):
            allowed = reference_probs(logits[row], s.temperature or 1.0, s.top_k, s.top_p) > 0
            if s.temperature == 0:
                assert token == int(logits[row].argmax())
            else:
                assert allowed[token], (row, token)


def test_the_vocabulary_is_never_sorted(monkeypatch):
    calls = []
    for name in ("sort", "argsort"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            calls.append(self.shape)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    logits = torch.randn(4, 5000)
    for top_k, top_p in [(0, 1.0), (40, 0.9), (0, 0.9)]:
        BatchSampler([RowSampling(1.0, top_k, top_p, i) for i in range(4)], "cpu")(logits)
    assert calls == []


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0, 15.0])
def test_radix_nucleus_equals_the_sorted_nucleus(scale):
    from stars_plugins.backends.sampling import _nucleus

    torch.manual_seed(3)
    probs = torch.softmax(torch.randn(32, 5000) * scale, dim=-1)
    top_p = torch.rand(32) * 0.98 + 0.01
    values, order = probs.sort(dim=-1, descending=True)
    before = values.cumsum(-1) - values
    expected = torch.zeros_like(probs, dtype=torch.bool).scatter(1, order, before <= top_p[:, None])
    got = _nucleus(probs, top_p)
    borderline = torch.zeros_like(expected).scatter(1, order, (before - top_p[:, None]).abs() < 1e-6)
    assert ((got != expected) & ~borderline).sum() == 0
    assert (got.sum(-1) >= 1).all()


def test_a_rows_stream_does_not_depend_on_its_companions():
    """Request A (seed 7, two candidates) alone, then inside a batch whose other rows draw on
    different steps, get copied and dropped: A's rows draw the same tokens throughout."""
    torch.manual_seed(2)
    logits = torch.randn(1, 30).expand(2, -1)
    a = [RowSampling(1.0, 0, 1.0, seed=7, stream=0), RowSampling(1.0, 0, 1.0, seed=7, stream=1)]
    alone = BatchSampler(a, "cpu")
    mixed = BatchSampler([RowSampling(0.8, 5, 1.0, seed=7), a[0], RowSampling(1.0, 0, 0.9, seed=1), a[1]], "cpu")
    mixed_logits = torch.randn(4, 30)
    mixed_logits[[1, 3]] = logits

    def steps(n: int, others_draw: bool) -> None:
        for _ in range(n):
            expected = alone(logits, torch.tensor([True, True]))
            live = torch.tensor([others_draw, True, not others_draw, True, others_draw][: len(mixed.rows)])
            got = mixed(mixed_logits, live)
            assert got[[1, 3]].tolist() == expected.tolist()

    steps(5, True)
    # A accepts its candidate 1: both its rows continue from it; a companion is copied too.
    alone.select([1, 1])
    mixed.select([0, 3, 2, 3, 0])
    mixed_logits = mixed_logits[[0, 3, 2, 3, 0]]
    steps(5, False)
    # The first companion finishes and leaves.
    alone.select([0, 1])
    mixed.select([1, 2, 3])
    mixed_logits = mixed_logits[[1, 2, 3]]
    mixed_logits[[0, 2]] = logits
    for _ in range(5):
        assert mixed(mixed_logits)[[0, 2]].tolist() == alone(logits).tolist()


def test_a_row_resumed_from_its_state_continues_its_stream():
    logits = torch.zeros(2, 1000)
    rows = [RowSampling(1.0, 0, 1.0, seed=4, stream=0), RowSampling(1.0, 0, 1.0, seed=4, stream=1)]
    original = BatchSampler(rows, "cpu")
    original(logits)
    original.select([1, 1])  # a copy: its stream is a derived one now
    original(logits, torch.tensor([True, False]))
    resumed = BatchSampler(original.state(), "cpu")
    for _ in range(3):
        assert resumed(logits).tolist() == original(logits).tolist()


def test_copies_of_one_row_draw_different_numbers():
    sampler = BatchSampler([RowSampling(1.0, 0, 1.0, seed=3)], "cpu")
    logits = torch.zeros(1, 1000)  # uniform: equal draws would give equal tokens
    sampler.select([0, 0, 0, 0])
    tokens = torch.stack([sampler(logits.expand(4, -1)) for _ in range(3)])
    assert all(len(set(step.tolist())) == 4 for step in tokens)


def test_rows_that_sit_out_a_step_do_not_advance():
    sampler = BatchSampler([RowSampling(1.0, 0, 1.0, seed=9), RowSampling(1.0, 0, 1.0, seed=9)], "cpu")
    logits = torch.zeros(2, 1000)
    first = sampler(logits, torch.tensor([True, False]))
    second = sampler(logits, torch.tensor([True, True]))
    assert second[1] == first[0] and second[0] != first[0]


# ---------------------------------------------------------------- end to end, tiny model from a config
@pytest.fixture(scope="module")
def tiny_runtime(tmp_path_factory) -> StarsRuntime:
    return build_tiny_runtime(tmp_path_factory.mktemp("tiny-llama-bpe"))


def odd_length(prompts, responses):
    return [float(len(r) % 2) for r in responses]


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (0, 0.9), (20, 0.8)])
def test_seeded_request_with_candidates_is_the_same_whatever_shares_its_batch(tiny_runtime, top_k, top_p):
    config = StarsConfig(
        horizon=3,
        num_candidates=3,
        max_new_tokens=15,
        target_reward=1.0,
        acceptance="hard",
        alpha=1.0,
        seed=11,
        max_rejections=50,
        temperature=1.0,
        top_k=top_k,
        top_p=top_p,
    )
    prompt = "count with me"
    [alone] = tiny_runtime.generate([prompt], config, reward=odd_length)
    crowded = tiny_runtime.generate(
        ["hi", prompt, "a much longer prompt with quite a few more words in it"], config, reward=odd_length
    )
    assert alone.stats.rejections > 0  # rejections and sibling copies were exercised
    assert crowded[1].token_ids == alone.token_ids
    assert crowded[1].text == alone.text
