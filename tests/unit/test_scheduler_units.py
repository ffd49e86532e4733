"""The scheduler's locks without a model: a reward call lets go of the policy lock, one reward object is
called by one thread at a time, and SystemExit from a reward becomes an error a caller can receive."""

from __future__ import annotations

import threading

import pytest

from stars_plugins.errors import EngineError, RewardError
from stars_plugins.rewards import CallableReward
from stars_plugins.scheduler import _as_exception, _PolicyLock, _RewardOutsidePolicyLock


def test_a_reward_call_lets_go_of_the_policy_lock_and_takes_it_back():
    lock = _PolicyLock()
    seen = []

    def reward(prompts, responses):
        other = threading.Thread(target=lambda: seen.append(lock._lock.acquire(timeout=30) and lock._lock.release()))
        other.start()
        other.join()
        return [1.0] * len(responses)

    wrapped = _RewardOutsidePolicyLock(CallableReward(reward, name="r"), lock)
    with lock:
        assert wrapped.score(["p"], ["r"]) == [1.0]
        assert lock._owner == threading.get_ident()  # held again after the call
    assert seen == [None]  # another thread could take the lock while the reward ran (acquire -> release)


def test_one_reward_object_is_called_by_one_thread_at_a_time():
    inside, most = [0], [0]
    guard = threading.Lock()

    def reward(prompts, responses):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.01)
        with guard:
            inside[0] -= 1
        return [0.0] * len(responses)

    shared = CallableReward(reward, name="shared")
    views = [_RewardOutsidePolicyLock(shared, _PolicyLock()) for _ in range(4)]
    threads = [threading.Thread(target=v.score, args=(["p"], ["r"])) for v in views for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_the_view_is_the_reward_for_everything_else():
    reward = CallableReward(lambda p, r: [2.0] * len(r), name="plain", default_target=1.5)
    view = _RewardOutsidePolicyLock(reward, _PolicyLock())
    assert (view.name, view.default_target) == ("plain", 1.5)
    assert not hasattr(view, "score_keyed")  # optional hooks exist only where the reward has them


@pytest.mark.parametrize("raised", [SystemExit("bye"), KeyboardInterrupt()])
def test_system_exit_from_a_reward_is_a_reward_error(raised):
    def reward(prompts, responses):
        raise raised

    view = _RewardOutsidePolicyLock(CallableReward(reward, name="quits"), _PolicyLock())
    with pytest.raises(RewardError, match=f"reward 'quits' raised {type(raised).__name__}"):
        view.score(["p"], ["r"])


def test_callers_receive_exceptions_and_engine_errors_for_the_rest():
    error = ValueError("x")
    assert _as_exception(error) is error
    wrapped = _as_exception(SystemExit(3))
    assert isinstance(wrapped, EngineError) and "SystemExit(3)" in str(wrapped)
    assert isinstance(wrapped.__cause__, SystemExit)
