"""Memory under sustained load, without a model: when freed memory is given back (`Trimmer`),
glibc's knobs, and that the reward lock registry keeps no reward alive."""

from __future__ import annotations

import gc
import sys
import time
import weakref

import pytest

from stars_plugins.memory import Trimmer, limit_malloc_arenas, malloc_trim
from stars_plugins.rewards import CallableReward
from stars_plugins.scheduler import _PolicyLock, _reward_locks, _RewardOutsidePolicyLock


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_going_idle_trims_once_and_a_rising_load_never_does():
    trim = Counting()
    trimmer = Trimmer(enabled=True, min_interval=3600, trim=trim)
    assert not trimmer.observe(0)  # nothing ran yet
    for rows in (4, 16, 32, 32):
        assert not trimmer.observe(rows)
    assert trimmer.observe(0)  # idle: always, whatever the interval
    assert not trimmer.observe(0)  # still idle, nothing new to give back
    assert (trim.calls, trimmer.trims) == (1, 1)


def test_a_halved_load_trims_at_most_once_per_interval():
    trim = Counting()
    trimmer = Trimmer(enabled=True, min_interval=0.2, trim=trim)
    trimmer.observe(32)
    assert not trimmer.observe(17)  # more than half of the peak
    assert trimmer.observe(16)  # half of the peak
    trimmer.observe(40)
    assert not trimmer.observe(8)  # halved again, but within the interval
    time.sleep(0.25)
    assert trimmer.observe(8)
    assert trim.calls == 2


def test_an_idle_only_trimmer_ignores_halvings():
    trim = Counting()
    trimmer = Trimmer(enabled=True, on_halving=False, min_interval=0, trim=trim)
    trimmer.observe(32)
    assert not trimmer.observe(1)
    assert trimmer.observe(0)
    assert trim.calls == 1


def test_a_disabled_trimmer_never_trims(monkeypatch):
    trim = Counting()
    monkeypatch.setenv("STARS_MALLOC_TRIM", "0")
    trimmer = Trimmer(trim=trim)
    trimmer.observe(8)
    assert not trimmer.observe(0)
    assert trim.calls == 0 and not trimmer.enabled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_knobs_answer_and_bad_values_are_refused():
    assert malloc_trim() is True
    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)


def test_a_reward_no_group_uses_leaves_no_lock_and_no_reference_behind():
    def per_call(prompts, responses):
        return [0.0] * len(responses)

    def locks_of_per_call():
        return [k for k in list(_reward_locks.keys()) if k[0] == "callable" and k[1] is alive()]

    alive = weakref.ref(per_call)
    view = _RewardOutsidePolicyLock(CallableReward(per_call, name="once"), _PolicyLock())
    assert view.score(["p"], ["r"]) == [0.0]
    assert len(locks_of_per_call()) == 1
    del view, per_call
    gc.collect()
    assert alive() is None  # the lock registry held the function (and its closure) for ever
    # (counting every lock instead would also see other tests' rewards collected meanwhile)
    assert not [k for k in list(_reward_locks.keys()) if k[0] == "callable" and k[1].__name__ == "per_call"]
