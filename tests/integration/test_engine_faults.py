"""The engine thread under faults and slow rewards: a reward raising SystemExit fails only the requests
it scores and the engine keeps serving; a reward that blocks stalls only its own group while the
policy itself still runs in one thread at a time."""

from __future__ import annotations

import threading

import pytest

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.backends.hf import batch as batch_module
from stars_plugins.errors import StarsError

pytestmark = pytest.mark.slow  # the tiny models borrow the embedded policy's tokenizer

GREEDY = StarsConfig(temperature=0.0, horizon=4, max_new_tokens=12, target_reward=0.0, acceptance="hard")


@pytest.fixture
def tiny(tiny_model_dirs) -> StarsRuntime:
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])
    rt.scheduler.configure(max_batch_rows=64, max_wait=0.0)
    return rt


def accept_all(prompts, responses):
    return [1.0] * len(responses)


@pytest.mark.parametrize("strategy", ["stars", "best_of_n"])
def test_a_reward_raising_system_exit_fails_its_request_and_the_engine_keeps_serving(tiny, strategy):
    def exits(prompts, responses):
        raise SystemExit("the reward called sys.exit()")

    with pytest.raises(StarsError, match=r"SystemExit\(the reward called sys.exit\(\)\)"):
        tiny.generate(["a prompt"], GREEDY, strategy=strategy, reward=exits)
    [result] = tiny.generate(["another prompt"], GREEDY, strategy=strategy, reward=accept_all)
    assert result.error is None and result.stats.accepted_tokens == 12


def test_a_keyboard_interrupt_in_a_round_fails_that_group_only(tiny, monkeypatch):
    original = batch_module.LockstepBatch.advance
    calls = []

    def interrupted_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", interrupted_once)
    with pytest.raises(StarsError, match="KeyboardInterrupt"):
        tiny.generate(["a prompt"], GREEDY, reward=accept_all)
    assert tiny.generate(["a prompt"], GREEDY, reward=accept_all)[0].stats.accepted_tokens == 12


def test_a_blocked_reward_stalls_only_its_own_group_and_the_policy_stays_single_threaded(tiny, monkeypatch):
    inside, released = threading.Event(), threading.Event()
    waited: list[bool] = []

    def blocking(prompts, responses):
        if not inside.is_set():
            inside.set()
            waited.append(released.wait(timeout=120))  # a hang guard only: the other caller releases it
        return [1.0] * len(responses)

    original = batch_module.LockstepBatch.advance
    running, most = [0], [0]
    guard = threading.Lock()

    def counted(self, *args, **kwargs):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return original(self, *args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(batch_module.LockstepBatch, "advance", counted)
    slow: list = []
    thread = threading.Thread(target=lambda: slow.extend(tiny.generate(["slow caller"], GREEDY, reward=blocking)))
    thread.start()
    assert inside.wait(timeout=120)
    # Another group (another reward model) runs to the end while the first group's reward is blocked.
    [other] = tiny.generate(["other caller"], GREEDY.updated(max_new_tokens=16), reward=accept_all)
    released.set()
    thread.join(timeout=120)
    assert other.stats.accepted_tokens == 16 and waited == [True]
    assert slow and slow[0].stats.accepted_tokens == 12
    assert most[0] == 1  # rounds of different groups never overlap: one thread runs the policy at a time
