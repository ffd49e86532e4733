"""A shared batch whose heartbeat fails half way: every caller still hears how its request ended.

The failure is raised by the policy batch after a request has finished in that heartbeat (its
rows dropped, its job gone), the case that once left that request's caller waiting forever."""

from __future__ import annotations

import threading

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.rewards.base import CallableReward
from tests.helpers.toy_backend import ToyBackend, ToyBatch


class BatchThatBreaksAfterARequestLeaves(ToyBatch):
    """Compaction fails once some request's rows have left the batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.most_rows = self.num_rows

    def merge(self, other):
        super().merge(other)
        self.most_rows = max(self.most_rows, self.num_rows)

    def compact(self):
        if self.num_rows < self.most_rows:
            raise RuntimeError("compaction broke")


class BreakingBackend(ToyBackend):
    def open_batch(self, prompts, copies, sampling):
        return BatchThatBreaksAfterARequestLeaves(prompts, copies, sampling)


def constant(prompts, responses):
    return [1.0] * len(responses)


@pytest.mark.parametrize("strategy", ["vanilla", "stars"])
def test_a_request_that_finished_in_the_failed_heartbeat_gets_its_result_and_the_rest_the_error(strategy):
    runtime = StarsRuntime(BreakingBackend(), reward=CallableReward(constant))  # type: ignore[arg-type]
    runtime.scheduler.configure(max_wait=0.5)  # both callers join the first batch
    judged = {} if strategy == "vanilla" else {"target_reward": 0.0, "acceptance": "hard"}  # every segment passes
    base = StarsConfig(strategy=strategy, horizon=4, num_candidates=1, seed=0, **judged)
    results: dict[str, object] = {}

    def call(name: str, tokens: int) -> None:
        try:
            results[name] = runtime.generate(["p"], base.updated(max_new_tokens=tokens))[0]
        except Exception as exc:  # the failed request raises in its caller
            results[name] = exc

    threads = [threading.Thread(target=call, args=args) for args in (("short", 4), ("long", 12))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), f"a caller never heard back: {results}"
    short, long = results["short"], results["long"]
    assert not isinstance(short, Exception) and short.finish_reason == "length" and len(short.token_ids) == 4
    assert isinstance(long, RuntimeError) and "compaction broke" in str(long)

    # the engine keeps serving: a later request runs in a fresh batch
    again = runtime.generate(["p"], base.updated(max_new_tokens=4))[0]
    assert again.finish_reason == "length"
