"""`GrowingLayer` holds exactly what transformers' `DynamicLayer` holds, step for step, through every
operation the lockstep batch performs on a cache (appending, row selection, compaction-style and
merge-style assignment, crop), while appending in place instead of copying the cache each step."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from stars_plugins.backends.hf.kv_cache import MIN_GROWTH, GrowingLayer, grow_in_place

ROWS, HEADS, DIM = 3, 2, 4


def columns(n: int, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, HEADS, n, DIM), torch.randn(rows, HEADS, n, DIM)


def same(a: DynamicLayer, b: DynamicLayer) -> None:
    assert a.get_seq_length() == b.get_seq_length()
    torch.testing.assert_close(a.keys, b.keys, rtol=0, atol=0)
    torch.testing.assert_close(a.values, b.values, rtol=0, atol=0)


def test_growing_layer_matches_dynamic_layer_through_every_batch_operation():
    torch.manual_seed(0)
    plain, growing = DynamicLayer(), GrowingLayer()
    prefill = columns(7)
    for layer in (plain, growing):
        out = layer.update(*prefill)
    torch.testing.assert_close(out[0], prefill[0], rtol=0, atol=0)
    for _ in range(100):  # decode steps, across several growths
        step = columns(1)
        expected = plain.update(*step)
        got = growing.update(*step)
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
    same(plain, growing)

    index = torch.tensor([2, 0, 0, 1])  # copies, drops, reorders rows
    for layer in (plain, growing):
        layer.reorder_cache(index)
    same(plain, growing)
    for _ in range(5):
        step = columns(1, rows=4)
        plain.update(*step)
        growing.update(*step)
    same(plain, growing)

    order = torch.argsort(torch.rand(4, plain.get_seq_length()), dim=1)[:, 20:]  # compaction: keys first
    for layer in (plain, growing):
        gather = order[:, None, :, None].expand(-1, HEADS, -1, DIM)
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, gather)
    same(plain, growing)

    other = columns(plain.get_seq_length(), rows=2)  # merging: rows appended below
    for layer in (plain, growing):
        layer.keys = torch.cat([layer.keys, other[0]], dim=0)
        layer.values = torch.cat([layer.values, other[1]], dim=0)
    step = columns(1, rows=6)
    torch.testing.assert_close(growing.update(*step)[0], plain.update(*step)[0], rtol=0, atol=0)

    for layer in (plain, growing):
        layer.crop(-3)
    same(plain, growing)


def test_decode_steps_write_in_place_and_the_buffer_grows_rarely():
    layer = GrowingLayer()
    layer.update(*columns(100))
    capacity = layer.capacity
    assert capacity >= 100 + MIN_GROWTH
    storage = layer.keys.untyped_storage().data_ptr()
    growths = 0
    for _ in range(400):
        before = layer.capacity
        layer.update(*columns(1))
        if layer.capacity != before:
            growths += 1
            assert layer.capacity >= before * 5 // 4  # a quarter more each time at least
        elif growths == 0:
            assert layer.keys.untyped_storage().data_ptr() == storage  # no copy while there is room
    assert layer.get_seq_length() == 500
    assert 1 <= growths <= 6
    assert layer.capacity <= 500 + max(MIN_GROWTH, 500 // 4) + 1


def test_row_selection_keeps_the_spare_columns():
    layer = GrowingLayer()
    layer.update(*columns(10))
    capacity = layer.capacity
    layer.reorder_cache(torch.tensor([1, 1, 0, 2, 2]))
    assert layer.capacity == capacity and layer.keys.shape == (5, HEADS, 10, DIM)


def test_grow_in_place_swaps_only_plain_dynamic_layers():
    cache = DynamicCache()
    cache.update(*columns(3), layer_idx=0)
    cache.update(*columns(3), layer_idx=1)
    keys = cache.layers[0].keys.clone()
    grow_in_place(cache)
    assert all(type(layer) is GrowingLayer for layer in cache.layers)
    torch.testing.assert_close(cache.layers[0].keys, keys, rtol=0, atol=0)
    keys, _ = cache.update(*columns(1), layer_idx=0)
    assert keys.shape[-2] == 4 and cache.get_seq_length() == 4

    class Other(DynamicLayer):
        pass

    cache.layers[1] = Other()
    grow_in_place(cache)
    assert type(cache.layers[1]) is Other


def test_the_decode_step_bench_times_both_caches_and_restores_the_default():
    from stars_plugins.backends.hf import batch as batch_module
    from stars_plugins.benchmarks.decode_step import decode_step_table, run_decode_step
    from stars_plugins.benchmarks.speed import embedded_tokenizer, tiny_llama_policy

    policy = tiny_llama_policy(embedded_tokenizer(), "cpu")
    seen: list[set[type]] = []
    original = batch_module.LockstepBatch.free

    def free(self):  # records the layer types each timed batch decoded with
        seen.append({type(layer) for layer in self.cache.layers})
        original(self)

    batch_module.LockstepBatch.free = free  # type: ignore[method-assign]
    try:
        report = run_decode_step(policy, rows=(2,), columns=(64,), steps=2, repeats=1, progress=lambda _: None)
    finally:
        batch_module.LockstepBatch.free = original  # type: ignore[method-assign]
    assert seen == [{GrowingLayer}, {DynamicLayer}]  # in place, then transformers' own
    (row,) = report["rows"]
    assert row["rows"] == 2 and row["in place ms"] > 0 and row["concatenating ms"] > 0
    assert "| 2 | 64 |" in decode_step_table(report)
    assert batch_module.grow_in_place is grow_in_place
