"""Per-row segment clocks in one KV cache (`LockstepBatch.begin / advance / rollback`): a row's
tokens depend on its own seed and history only, not on the clocks of the rows beside it, and a
rolled-back segment leaves no trace in the cache."""

from __future__ import annotations

import pytest

from stars_plugins import StarsRuntime
from stars_plugins.backends.sampling import RowSampling

pytestmark = pytest.mark.slow

PROMPTS = [[1, 450, 338, 263], [1, 1724, 526, 366, 1048, 29973], [1, 15043]]


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_dirs):
    return StarsRuntime.from_pretrained(tiny_model_dirs["llama"]).policy


def sampling(seed: int) -> RowSampling:
    return RowSampling(1.0, 0, 1.0, seed=seed)


def alone(policy, prompt: int, seed: int, budget: int) -> list[int]:
    batch = policy.open_batch([PROMPTS[prompt]], [1], [sampling(seed)])
    out = batch.run_round([budget])
    return out.segment(0)


def test_rows_on_different_clocks_sample_what_they_sample_alone(tiny_policy):
    """Row 0 runs segments of 4, row 1 one segment of 12 advanced in chunks of 3, row 2 idles
    first and starts late: every row's tokens equal its lone run."""
    batch = tiny_policy.open_batch(PROMPTS, [1, 1, 1], [sampling(1), sampling(2), sampling(3)])
    batch.begin([0, 1], [4, 12])
    got: dict[int, list[int]] = {0: [], 1: [], 2: []}
    started_late = False
    for _ in range(8):
        for done in batch.advance(3):
            got[done.row] += done.tokens
            if done.row == 0 and len(got[0]) < 12:
                batch.begin([0], [4])
        if not started_late:
            batch.begin([2], [5])
            started_late = True
    assert got[0] == alone(tiny_policy, 0, 1, 12)
    assert got[1] == alone(tiny_policy, 1, 2, 12)
    assert got[2] == alone(tiny_policy, 2, 3, 5)


def test_a_rolled_back_segment_leaves_the_row_as_before(tiny_policy):
    batch = tiny_policy.open_batch(PROMPTS[:2], [1, 1], [sampling(1), sampling(2)])
    batch.begin([0, 1], [4, 8])
    [first] = batch.advance(4)
    assert first.row == 0 and len(first.tokens) == 4
    batch.rollback([0])  # row 1 is still mid-segment
    batch.begin([0], [4], forced={0: first.tokens})  # replaying the same tokens gives the same state
    done = {d.row: d.tokens for d in batch.advance(8)}
    assert done[0] == first.tokens and len(done[1]) == 8
    batch.begin([0], [6])
    continued = batch.advance(6)[0].tokens
    reference = tiny_policy.open_batch(PROMPTS[:1], [1], [sampling(1)])
    assert reference.run_round([4]).segment(0) == first.tokens  # row 1 beside it changed nothing
    reference.rollback([0])
    reference.run_round([4], forced={0: first.tokens})
    assert reference.run_round([6]).segment(0) == continued


def test_idle_rows_draw_no_random_numbers(tiny_policy):
    batch = tiny_policy.open_batch(PROMPTS[:2], [1, 1], [sampling(1), sampling(2)])
    batch.begin([1], [10])
    batch.advance(10)
    batch.begin([0], [6])
    assert batch.advance(6)[0].tokens == alone(tiny_policy, 0, 1, 6)
