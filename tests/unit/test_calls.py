"""The call surface the adapters share (`stars_plugins.calls`) and streams that stop when left.

Unit tests on fake jobs, plain objects and a toy backend; the ones that generate on the embedded policy
are in tests/integration/test_calls_runtime.py.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from stars_plugins import (
    ConfigError,
    GenerationResult,
    Segment,
    StarsConfig,
    StarsRuntime,
    UnknownRewardError,
    calls,
)
from stars_plugins.decoding import FinishEvent, SegmentEvent
from stars_plugins.rewards import CallableReward, available_rewards
from stars_plugins.runtime import AsyncGenerationStream, GenerationStream
from stars_plugins.streams import AsyncClosingIterator, ClosingIterator, closing_stream

PROMPT = "Describe a sunny afternoon at the beach."


# ---------------------------------------------------------------------- settings
def test_config_fields_mirror_every_stars_config_field() -> None:
    fields = calls.config_fields({"max_new_tokens": "max_tokens"})
    assert set(fields) == (set(StarsConfig.model_fields) - {"max_new_tokens"}) | {"max_tokens"}
    annotation, info = fields["max_tokens"]
    core = StarsConfig.model_fields["max_new_tokens"]
    assert annotation == core.annotation and info.default == core.default and info.description == core.description


def test_settings_model_validates_with_the_core_text_and_accepts_the_alias() -> None:
    renamed = calls.settings_model("Renamed", {"max_new_tokens": "max_tokens"})
    plain = calls.settings_model("Plain")
    assert renamed(max_new_tokens=7).max_tokens == 7 and plain(max_tokens=7).max_new_tokens == 7
    assert renamed(stop=".").stop == (".",) == plain(stop=".").stop  # stored as StarsConfig stores it
    assert StarsConfig(**plain(horizon=8, entropy_threshold=2.0).config_settings()) == StarsConfig(
        horizon=8, entropy_threshold=2.0
    )
    with pytest.raises(ConfigError) as reference:
        StarsConfig(max_new_tokens=0)
    for model in (renamed, plain):
        for name in ("max_tokens", "max_new_tokens"):
            with pytest.raises(ConfigError) as raised:
                model(**{name: 0})
            assert str(raised.value) == str(reference.value)
        with pytest.raises(ConfigError, match="pass max_tokens or max_new_tokens, not both"):
            model(max_tokens=1, max_new_tokens=2)
        with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'horizn'; accepted: .*horizon"):
            model(horizn=4)


def test_resolve_config_applies_overrides_and_rejects_unknown_keywords() -> None:
    settings = calls.settings_model("S")(horizon=4).config_settings()
    config, reward = calls.resolve_config(settings, {"max_tokens": 9, "reward": "sentiment"}, owner="X")
    assert (config.horizon, config.max_new_tokens, reward) == (4, 9, "sentiment")
    with pytest.raises(ConfigError, match=r"^X got unknown keyword argument\(s\) 'horizn'; accepted: .*horizon"):
        calls.resolve_config(settings, {"horizn": 8}, owner="X")
    with pytest.raises(ConfigError) as raised:
        calls.resolve_config(settings, {"top_p": 0}, owner="X")
    with pytest.raises(ConfigError) as reference:
        StarsConfig(top_p=0)
    assert str(raised.value) == str(reference.value)
    with pytest.raises(UnknownRewardError, match="harmles"):
        calls.resolve_config(settings, {"reward": "harmles"}, owner="X")


def test_check_reward_lists_the_builtins_and_rejects_other_types() -> None:
    with pytest.raises(UnknownRewardError) as info:
        calls.check_reward("harmles")
    assert all(name in str(info.value) for name in available_rewards())
    with pytest.raises(ConfigError, match="got int"):
        calls.check_reward(3)
    for fine in (None, "sentiment", "org/model", lambda p, r: [0.0] * len(r)):
        calls.check_reward(fine)


def test_reward_key_tells_whether_two_references_are_the_same_reward() -> None:
    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [0.0] * len(responses)

    def other(prompts: list[str], responses: list[str]) -> list[float]:
        return [1.0] * len(responses)

    assert calls.reward_key(score) == calls.reward_key(score) == calls.reward_key(CallableReward(score))
    assert calls.reward_key(score) != calls.reward_key(other)
    assert calls.reward_key("sentiment") == calls.reward_key("sentiment") != calls.reward_key(None)
    assert calls.reward_label(score).endswith("score") and calls.reward_label(None) is None


# ---------------------------------------------------------------------- streams
def segment(index: int, text: str, final: bool = False) -> Segment:
    return Segment(index, text, (index,), 0.5, None, 0, False, final, "eos" if final else None)


def result(text: str) -> GenerationResult:
    return GenerationResult(PROMPT, text, [0, 1, 2], 0.5, "eos", "stars")


class FakeJob:
    """What `GenerationStream` needs from a job: events and a cancel flag."""

    def __init__(self, texts: list[str]):
        self.cancelled = False
        self.closed = False
        last = len(texts) - 1
        self._events = [SegmentEvent(None, segment(i, t, i == last)) for i, t in enumerate(texts)]  # type: ignore[arg-type]
        self._events.append(FinishEvent(None, result("".join(texts))))  # type: ignore[arg-type]

    def events(self) -> Iterator[Any]:
        try:
            yield from self._events
        finally:
            self.closed = True

    async def aevents(self) -> Any:
        for event in self.events():
            yield event

    def cancel(self) -> None:
        self.cancelled = True


def test_stream_deltas_add_up_and_the_last_carries_the_result() -> None:
    job = FakeJob(["Hello", "", " world", "!"])
    deltas = list(calls.stream_deltas(GenerationStream(job)))  # type: ignore[arg-type]
    assert [d.text for d in deltas] == ["Hello", "", " world", "!"]
    assert [d.so_far for d in deltas] == ["Hello", "Hello", "Hello world", "Hello world!"]
    assert [d.result is not None for d in deltas] == [False, False, False, True]
    assert deltas[-1].result.text == "Hello world!" and deltas[-1].segment.final  # type: ignore[union-attr]
    assert not job.cancelled and job.closed  # finished: closed, nothing to cancel


def test_leaving_a_loop_over_a_held_stream_cancels_it() -> None:
    job = FakeJob(["a", "b", "c"])
    stream = GenerationStream(job)  # type: ignore[arg-type]
    for _segment in stream:
        break
    assert job.cancelled and job.closed and stream.result is None
    job = FakeJob(["a", "b", "c"])
    deltas = calls.stream_deltas(GenerationStream(job))  # type: ignore[arg-type]
    next(deltas)
    deltas.close()
    assert job.cancelled
    job = FakeJob(["a", "b"])
    stream = GenerationStream(job)  # type: ignore[arg-type]
    assert [s.text for s in stream] == ["a", "b"] and stream.result is not None and not job.cancelled


async def test_leaving_an_async_loop_over_a_held_stream_cancels_it() -> None:
    job = FakeJob(["a", "b", "c"])
    stream = AsyncGenerationStream(lambda: job)  # type: ignore[arg-type, return-value]
    async for _segment in stream:
        break
    for _ in range(10):  # asyncio closes the dropped loop generator on a later turn of the loop
        await asyncio.sleep(0)
    assert job.cancelled and stream.result is None
    job = FakeJob(["a", "b"])
    deltas = [d async for d in calls.astream_deltas(AsyncGenerationStream(lambda: job))]  # type: ignore[arg-type]
    assert deltas[-1].result is not None and deltas[-1].so_far == "ab" and not job.cancelled


def test_closing_iterator_closes_its_source_when_a_loop_is_left() -> None:
    closed: list[str] = []

    def source() -> Iterator[int]:
        try:
            yield from range(5)
        finally:
            closed.append("closed")

    wrapped = ClosingIterator(source())
    assert next(wrapped) == 0
    for _item in wrapped:
        break
    assert closed == ["closed"]
    assert list(ClosingIterator(iter([1, 2]))) == [1, 2]

    class Framework:
        @closing_stream
        def stream(self) -> Iterator[int]:
            return source()

    held = Framework().stream()
    for _item in held:
        break
    assert closed == ["closed", "closed"]
    del held
    gc.collect()


async def test_async_closing_iterator_closes_its_source_when_a_loop_is_left() -> None:
    closed: list[str] = []

    async def source() -> Any:
        try:
            for i in range(5):
                yield i
        finally:
            closed.append("closed")

    held = AsyncClosingIterator(source())
    async for _item in held:
        break
    for _ in range(10):
        await asyncio.sleep(0)
    assert closed == ["closed"]


# ---------------------------------------------------------------------- both adapters
def test_both_adapters_reach_every_setting_with_the_same_error_text() -> None:
    langchain = pytest.importorskip("langchain_stars")
    llama = pytest.importorskip("llama_index.llms.stars")
    classes = (langchain.StarsLLM, langchain.ChatStars, llama.StarsLLM)
    for cls in classes:
        assert {calls.canonical_name(n) for n in cls.model_fields} >= set(StarsConfig.model_fields)
        every = {
            "calibration_quantile": 0.5,
            "truncate_prompt": True,
            "entropy_threshold": 2.0,
            "min_segment_tokens": 2,
            "max_segment_tokens": 8,
            "max_tokens": 12,
        }
        assert StarsConfig(**cls(**every).config_settings()) == StarsConfig(**calls.canonical(every))
    for bad in ({"horizon": 0}, {"max_tokens": 0}, {"strategy": "beam"}, {"top_p": "x"}):
        with pytest.raises(ConfigError) as reference:
            StarsConfig(**calls.canonical(bad))
        for cls in classes:
            with pytest.raises(ConfigError) as raised:
                cls(**bad)
            assert str(raised.value) == str(reference.value)


# ---------------------------------------------------------------------- one request path
def _result(prompt_tokens: int, tokens: int) -> GenerationResult:
    result = GenerationResult("p", "x" * tokens, list(range(tokens)), None, "length", "stars")
    result.stats.prompt_tokens, result.stats.accepted_tokens = prompt_tokens, tokens
    return result


def test_one_usage_formula_counts_each_distinct_prompt_once() -> None:
    results = [_result(10, 3), _result(10, 4), _result(7, 5)]
    assert calls.token_usage(results) == {"prompt_tokens": 27, "completion_tokens": 12, "total_tokens": 39}
    # n choices of one prompt (as stars serve's n) share its tokens
    shared = calls.token_usage(results, prompt_of=[0, 0, 1])
    assert shared == {"prompt_tokens": 17, "completion_tokens": 12, "total_tokens": 29}


def test_a_server_takes_built_in_reward_names_only() -> None:
    assert (
        calls.resolve_config({}, {"reward": "sentiment"}, owner="srv", registered_rewards_only=True)[1] == "sentiment"
    )
    for spec in ("/etc/passwd", "org/model", lambda p, r: [0.0] * len(r), 3):
        with pytest.raises(UnknownRewardError, match="this server offers"):
            calls.resolve_config({}, {"reward": spec}, owner="srv", registered_rewards_only=True)


def test_the_runtime_offers_what_adapters_count_with(tmp_path) -> None:
    from tests.helpers.toy_backend import ToyBackend

    runtime = StarsRuntime(ToyBackend(), CallableReward(lambda p, r: [0.0] * len(r)))
    assert calls.text_token_ids(runtime, "abc") == [0, 1, 2] == runtime.token_ids("abc")
    assert runtime.count_tokens("abc d") == 4 and not runtime.has_chat_template
    assert calls.prompt_token_ids(runtime, "hi", StarsConfig()) == runtime.render("hi") == [1, 2, 3]
