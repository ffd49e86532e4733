"""`StarsLLM` and `ChatStars` on the real embedded models (SmolLM2-135M-Instruct), with small token budgets.

Every test here loads the embedded policy: tests/conftest.py marks this folder `slow`."""

from __future__ import annotations

import asyncio
import runpy
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, trim_messages
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import ConfigurableField
from langchain_stars import ChatStars, StarsLLM
from langchain_stars.chat_models import to_chat_messages

from stars_plugins import (
    ConfigError,
    GenerationStream,
    PromptError,
    RewardError,
    StarsConfig,
    StarsRuntime,
    UnknownRewardError,
)
from stars_plugins.backends import loaded_policies
from stars_plugins.runtime import GenerationJob

#: The repository's examples/ folder (the examples are part of the stars-plugins repository, not of this package).
EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
PROMPT = "Describe a sunny afternoon at the beach."
# Small budgets: the machine has 2 cores shared with other test runs. max_rejections=0 keeps every
# segment to one round (the best candidate is taken), so timings stay predictable.
SMALL: dict[str, Any] = {"max_tokens": 8, "horizon": 4, "max_rejections": 0}


@pytest.fixture
def llm(runtime: StarsRuntime) -> StarsLLM:
    return StarsLLM(**SMALL, seed=7)


class GenerateSpy:
    """Records every `StarsRuntime.generate` call (all runtimes), then runs the real one."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> GenerateSpy:
        real = StarsRuntime.generate
        spy = self

        def generate(self: StarsRuntime, prompts: Any, config: StarsConfig | None = None, **kwargs: Any) -> Any:
            results = real(self, prompts, config, **kwargs)
            spy.calls.append(
                {"runtime": self, "prompts": list(prompts), "config": config, "kwargs": kwargs, "results": results}
            )
            return results

        monkeypatch.setattr(StarsRuntime, "generate", generate)
        return self


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> GenerateSpy:
    return GenerateSpy().install(monkeypatch)


class TokenRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


class AsyncTokenRecorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


# ---------------------------------------------------------------------------------------------- settings


def test_unknown_call_kwarg_raises(llm: StarsLLM, spy: GenerateSpy) -> None:
    with pytest.raises(ConfigError, match=r"unknown keyword argument\(s\) 'horizn'.*horizon"):
        llm.invoke(PROMPT, horizn=8)
    with pytest.raises(ConfigError, match="horizon=0"):
        llm.invoke(PROMPT, horizon=0)
    with pytest.raises(UnknownRewardError, match="sentiment"):
        llm.invoke(PROMPT, reward="nonexistent")
    assert spy.calls == []  # rejected before anything ran


def test_chains_with_different_settings_share_one_policy(runtime: StarsRuntime) -> None:
    before = len(loaded_policies())
    a = StarsLLM(horizon=4, temperature=0.3)
    b = StarsLLM(horizon=16, reward="sentiment", num_candidates=2)
    c = ChatStars(reward=lambda prompts, responses: [float(len(r)) for r in responses], acceptance="hard")
    assert a.runtime.policy is b.runtime.policy is c.runtime.policy is runtime.policy
    assert len(loaded_policies()) == before
    assert c.runtime.reward.name != b.runtime.reward.name == "sentiment"


def test_tracing_params(llm: StarsLLM) -> None:
    params = llm._get_ls_params(stop=["\n"])
    assert params["ls_provider"] == "stars" and params["ls_model_type"] == "llm"
    assert params["ls_model_name"] == llm.runtime.model_name
    assert params["ls_max_tokens"] == 8 and params["ls_temperature"] == 1.0 and params["ls_stop"] == ["\n"]
    assert llm._llm_type == "stars"
    ident = llm._identifying_params
    assert ident["horizon"] == 4 and ident["max_tokens"] == 8 and ident["model_name"] == llm.runtime.model_name
    assert StarsLLM(policy="some/model").model_name == "some/model"  # `policy=` is the same field


# ---------------------------------------------------------------------------------------------- invoke / batch
def test_invoke_in_a_chain_returns_only_new_text(llm: StarsLLM, spy: GenerateSpy) -> None:
    chain = PromptTemplate.from_template("Describe {topic} in one sentence.") | llm | StrOutputParser()
    text = chain.invoke({"topic": "a sunny afternoon at the beach"})
    (call,) = spy.calls
    assert call["prompts"] == ["Describe a sunny afternoon at the beach in one sentence."]
    assert text == call["results"][0].text and text.strip()
    assert "Describe" not in text and "one sentence" not in text  # no echo of the prompt
    config = call["config"]
    assert (config.max_new_tokens, config.horizon, config.max_rejections) == (8, 4, 0)
    assert config.apply_chat_template is True  # plain prompts go through the chat template by default
    assert 0 < len(call["results"][0].token_ids) <= 8


def test_batch_is_one_lockstep_runtime_call(llm: StarsLLM, spy: GenerateSpy) -> None:
    prompts = ["Name a fruit.", "Name a color.", "Name an animal."]
    texts = llm.batch(prompts, max_tokens=4)  # per-call settings apply to the whole batch
    assert len(spy.calls) == 1
    (call,) = spy.calls
    assert call["prompts"] == prompts and call["config"].max_new_tokens == 4
    assert texts == [r.text for r in call["results"]]
    assert all(t.strip() for t in texts)


def test_generate_reports_stars_stats_and_usage(llm: StarsLLM) -> None:
    result = llm.generate([PROMPT])
    generation = result.generations[0][0]
    info = generation.generation_info
    assert info is not None
    assert info["finish_reason"] in {"eos", "length"} and info["strategy"] == "stars"
    stats = info["stats"]
    assert stats["rounds"] >= stats["segments"] >= 1 and 0 < stats["accepted_tokens"] <= 8
    assert isinstance(info["reward"], float)
    usage = result.llm_output["token_usage"]
    assert usage["completion_tokens"] == stats["accepted_tokens"]
    assert usage["prompt_tokens"] == stats["prompt_tokens"] > llm.runtime.policy.count_tokens(PROMPT)  # template
    assert result.llm_output["model_name"] == llm.runtime.model_name
    assert result.llm_output["reward_model"] == "harmless"  # the default reward


# ---------------------------------------------------------------------------------------------- per-chain settings
def test_configurable_fields_switch_settings_without_reloading(llm: StarsLLM, spy: GenerateSpy) -> None:
    before = list(loaded_policies())
    configurable = llm.configurable_fields(horizon=ConfigurableField(id="horizon"))
    text = configurable.with_config(configurable={"horizon": 8}).invoke(PROMPT)
    (call,) = spy.calls
    assert call["config"].horizon == 8 and call["config"].max_new_tokens == 8
    result = call["results"][0]
    assert text == result.text
    assert len(result.segments) == 1  # one segment of up to 8 tokens, where horizon 4 needs two
    assert call["runtime"].policy is llm.runtime.policy
    assert loaded_policies() == before  # no model was loaded for the new settings


def test_configurable_settings_helper(llm: StarsLLM, spy: GenerateSpy) -> None:
    chain = llm.configurable_settings("max_tokens", "temperature")
    chain.with_config(configurable={"max_tokens": 4, "temperature": 0.0}).invoke(PROMPT)
    (call,) = spy.calls
    assert (call["config"].max_new_tokens, call["config"].temperature) == (4, 0.0)
    with pytest.raises(ConfigError, match=r"unknown per-chain setting\(s\) 'dtype'"):
        llm.configurable_settings("dtype")


def test_per_call_kwargs_and_bind_override_fields(llm: StarsLLM, spy: GenerateSpy) -> None:
    llm.invoke(PROMPT, max_tokens=4, temperature=0.0)
    llm.bind(horizon=2, max_tokens=4, apply_chat_template=False).invoke(PROMPT)
    first, second = (c["config"] for c in spy.calls)
    assert (first.max_new_tokens, first.temperature, first.horizon) == (4, 0.0, 4)
    assert (second.horizon, second.max_new_tokens, second.apply_chat_template) == (2, 4, False)
    assert llm.horizon == 4 and llm.max_tokens == 8  # the chain's own settings are untouched


# ---------------------------------------------------------------------------------------------- streaming
def test_stream_yields_segments_and_fires_callbacks(llm: StarsLLM) -> None:
    recorder = TokenRecorder()
    chunks = list(llm.stream(PROMPT, config={"callbacks": [recorder]}))
    texts = [c for c in chunks if c]
    assert len(texts) >= 2  # 8 tokens in segments of 4
    assert recorder.tokens == texts  # callbacks received exactly what the consumer did
    assert PROMPT not in "".join(chunks)


def test_streaming_flag_fires_callbacks_on_invoke(runtime: StarsRuntime) -> None:
    recorder = TokenRecorder()
    llm = StarsLLM(**SMALL, seed=5, streaming=True, callbacks=[recorder])
    text = llm.invoke(PROMPT)
    assert len(recorder.tokens) >= 2 and "".join(recorder.tokens) == text


def test_stop_sequences_in_every_path(runtime: StarsRuntime) -> None:
    llm = StarsLLM(temperature=0.0, max_tokens=12, horizon=4, max_rejections=0)  # greedy: repeatable
    pieces = [p for p in llm.stream(PROMPT) if p]
    assert len(pieces) >= 2
    full = "".join(pieces)
    # A stop string that spans the boundary between the first two segments: the hardest case.
    stop = pieces[0][-2:] + pieces[1][:2]
    expected = full[: full.index(stop)]

    result = llm.generate([PROMPT], stop=[stop]).generations[0][0]
    assert result.text == expected and stop not in result.text
    assert result.generation_info["finish_reason"] == "stop"
    assert result.generation_info["stats"]["accepted_tokens"] < 12  # generation stopped, not just the text

    streamed = "".join(llm.stream(PROMPT, stop=[stop]))
    assert streamed == expected

    async def astreamed() -> str:
        return "".join([p async for p in llm.astream(PROMPT, stop=[stop])])

    assert asyncio.run(astreamed()) == expected

    field_stop = StarsLLM(temperature=0.0, max_tokens=12, horizon=4, max_rejections=0, stop=[stop])
    assert field_stop.invoke(PROMPT) == expected  # a `stop` field works like the argument


def test_abandoned_stream_leaves_runtime_ready(monkeypatch: pytest.MonkeyPatch, runtime: StarsRuntime) -> None:
    closed: list[GenerationStream] = []
    real_close = GenerationStream.close

    def close(self: GenerationStream) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(GenerationStream, "close", close)
    llm = StarsLLM(max_tokens=24, horizon=4, max_rejections=0, seed=1)
    stream = llm.stream(PROMPT)
    first = next(stream)
    assert first
    stream.close()
    assert closed, "the runtime stream was not closed when the consumer left"
    assert closed[-1].result is None  # it stopped early: no finished result
    text = llm.invoke(PROMPT, max_tokens=4)
    assert text.strip()


# ---------------------------------------------------------------------------------------------- async
async def _run_with_ticker(awaitable: Any) -> tuple[Any, int, float]:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    try:
        value = await awaitable
    finally:
        done.set()
        await task
    return value, ticks, time.perf_counter() - start


async def test_ainvoke_keeps_the_event_loop_running(llm: StarsLLM) -> None:
    text, ticks, elapsed = await _run_with_ticker(llm.ainvoke(PROMPT))
    assert text.strip()
    # A blocked loop would tick about once; a free one ticks every few ms for the whole generation.
    assert ticks >= 20 and ticks >= 0.1 * elapsed / 0.005, (ticks, elapsed)


async def test_astream_keeps_the_event_loop_running_and_fires_async_callbacks(llm: StarsLLM) -> None:
    recorder = AsyncTokenRecorder()

    async def consume() -> list[str]:
        return [c async for c in llm.astream(PROMPT, config={"callbacks": [recorder]}) if c]

    chunks, ticks, elapsed = await _run_with_ticker(consume())
    assert len(chunks) >= 2
    assert recorder.tokens == chunks
    assert ticks >= 20 and ticks >= 0.1 * elapsed / 0.005, (ticks, elapsed)


async def test_streaming_flag_fires_async_callbacks_on_ainvoke(runtime: StarsRuntime) -> None:
    recorder = AsyncTokenRecorder()
    llm = StarsLLM(**SMALL, seed=5, streaming=True, callbacks=[recorder])
    text = await llm.ainvoke(PROMPT)
    assert len(recorder.tokens) >= 2 and "".join(recorder.tokens) == text


async def test_abatch_is_one_lockstep_batch(llm: StarsLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = StarsRuntime.agenerate

    async def agenerate(self: StarsRuntime, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(prompts))
        return await real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(StarsRuntime, "agenerate", agenerate)
    texts = await llm.abatch(["Name a fruit.", "Name a color."], max_tokens=4)
    assert calls == [2] and len(texts) == 2 and all(t.strip() for t in texts)


async def test_abandoned_astream_is_cancelled_and_runtime_stays_ready(
    monkeypatch: pytest.MonkeyPatch, runtime: StarsRuntime
) -> None:
    jobs = record_jobs(monkeypatch)
    llm = StarsLLM(max_tokens=48, horizon=4, max_rejections=0, seed=1)
    agen = llm.astream(PROMPT)
    assert await agen.__anext__()
    await agen.aclose()
    (abandoned,) = jobs[0].requests
    for _ in range(600):  # the request stops at its next round boundary
        if abandoned.done:
            break
        await asyncio.sleep(0.05)
    assert abandoned.finish_reason == "cancelled"
    assert abandoned.stats.accepted_tokens < 48
    assert (await llm.ainvoke(PROMPT, max_tokens=4)).strip()


# ---------------------------------------------------------------------------------------------- ChatStars
def test_chat_invoke_uses_the_chat_template_and_reports_usage(runtime: StarsRuntime, spy: GenerateSpy) -> None:
    chat = ChatStars(**SMALL, seed=3)
    messages = [SystemMessage("You answer in one short sentence."), HumanMessage("What is the sea?")]
    reply = chat.invoke(messages)
    assert isinstance(reply, AIMessage)
    (call,) = spy.calls
    assert call["prompts"] == [
        [
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What is the sea?"},
        ]
    ]
    result = call["results"][0]
    assert reply.content == result.text and "What is the sea?" not in reply.content
    template_ids, _ = runtime.policy.render(call["prompts"][0], call["config"])
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == len(template_ids)
    assert usage["output_tokens"] == len(result.token_ids) > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["finish_reason"] in {"eos", "length"}
    assert reply.response_metadata["stats"]["segments"] >= 1
    assert reply.response_metadata["model_name"] == runtime.model_name


def test_chat_stream_and_callbacks(runtime: StarsRuntime) -> None:
    chat = ChatStars(**SMALL, seed=11)
    recorder = TokenRecorder()
    chunks = list(chat.stream("Tell me about the moon.", config={"callbacks": [recorder]}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.content]) >= 2
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.usage_metadata is not None and 0 < merged.usage_metadata["output_tokens"] <= 8
    assert merged.response_metadata["finish_reason"] in {"eos", "length"}
    assert "".join(recorder.tokens) == merged.content


async def test_chat_astream_with_stop(runtime: StarsRuntime) -> None:
    chat = ChatStars(temperature=0.0, max_tokens=12, horizon=4, max_rejections=0)  # greedy: repeatable
    question = "Tell me about the moon."
    full = "".join([str(c.content) async for c in chat.astream(question)])
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.index(stop)]
    chunks = [c async for c in chat.astream(question, stop=[stop])]
    text = "".join(str(c.content) for c in chunks)
    assert text == expected and stop not in text
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata["output_tokens"] < 12


# ---------------------------------------------------------------------------------------------- framework contracts


def test_token_counts_use_the_policy_tokenizer_offline(runtime: StarsRuntime) -> None:
    text = "word " * 300
    expected = list(runtime.policy.tokenizer(text, add_special_tokens=False)["input_ids"])
    for model in (StarsLLM(), ChatStars()):
        assert model.get_token_ids(text) == expected
        assert model.get_num_tokens(text) == len(expected) >= 300  # was 0: a GPT-2 tokenizer it cannot download
    chat = ChatStars(system_prompt="Be brief.")
    messages = [HumanMessage("Hi there"), AIMessage("Hello!"), HumanMessage("Name a fruit.")]
    templated = runtime.policy.render(to_chat_messages(messages), StarsConfig(system_prompt="Be brief."))[0]
    assert chat.get_num_tokens_from_messages(messages) == len(templated)  # chat template and system turn counted
    assert len(templated) > sum(chat.get_num_tokens(str(m.content)) for m in messages)
    assert chat.get_num_tokens_from_messages([]) == 0


def test_trim_messages_with_chat_stars_as_token_counter(runtime: StarsRuntime) -> None:
    chat = ChatStars()
    history = [
        HumanMessage(f"Question {i}: " + "word " * 30) if i % 2 == 0 else AIMessage(f"Answer {i}.") for i in range(8)
    ]
    budget = chat.get_num_tokens_from_messages(history[-3:])
    trimmed = trim_messages(history, max_tokens=budget, token_counter=chat, strategy="last")
    assert 0 < len(trimmed) < len(history)  # it used to keep everything
    assert trimmed == history[-len(trimmed) :]
    assert chat.get_num_tokens_from_messages(trimmed) <= budget


def test_llm_cache_keys_on_per_call_settings(runtime: StarsRuntime, spy: GenerateSpy) -> None:
    llm = StarsLLM(**SMALL, seed=7, cache=InMemoryCache())
    first = llm.invoke(PROMPT)
    assert llm.invoke(PROMPT) == first and len(spy.calls) == 1  # the same settings: a cache hit
    llm.invoke(PROMPT, reward="sentiment")
    assert len(spy.calls) == 2 and spy.calls[-1]["kwargs"]["reward"].name == "sentiment"  # not the cached answer
    llm.invoke(PROMPT, reward="sentiment")
    llm.bind(horizon=2).invoke(PROMPT)
    assert len(spy.calls) == 3 and spy.calls[-1]["config"].horizon == 2
    chat = ChatStars(**SMALL, seed=7, cache=InMemoryCache())  # chat models key on call kwargs already
    chat.invoke(PROMPT), chat.invoke(PROMPT), chat.invoke(PROMPT, horizon=2)
    assert len(spy.calls) == 5


def fails_for_boom(prompts: list[str], responses: list[str]) -> list[float]:
    if any("boom" in p for p in prompts):
        raise RuntimeError("this reward cannot score boom")
    return [0.0] * len(responses)


async def test_batch_with_return_exceptions_gives_each_prompt_its_own_outcome(runtime: StarsRuntime) -> None:
    llm = StarsLLM(**SMALL, seed=7, reward=fails_for_boom, target_reward=0.0)
    prompts = ["Name a fruit.", "  ", "Say boom."]
    for outcomes in (llm.batch(prompts, return_exceptions=True), await llm.abatch(prompts, return_exceptions=True)):
        good, empty, boom = outcomes
        assert isinstance(good, str) and good.strip()
        assert isinstance(empty, PromptError) and "empty" in str(empty)
        assert isinstance(boom, RewardError) and "cannot score boom" in str(boom)


def record_jobs(monkeypatch: pytest.MonkeyPatch) -> list[GenerationJob]:
    jobs: list[GenerationJob] = []
    real_start = StarsRuntime.start

    def start(self: StarsRuntime, *args: Any, **kwargs: Any) -> GenerationJob:
        jobs.append(real_start(self, *args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(StarsRuntime, "start", start)
    return jobs


async def finish_reason(job: GenerationJob) -> str | None:
    """Wait (bounded) for the job's request to end; its finish reason."""
    (request,) = job.requests
    for _ in range(1200):
        if request.done:
            break
        await asyncio.sleep(0.05)
    return request.finish_reason


async def test_leaving_a_loop_over_a_held_stream_cancels_it(
    monkeypatch: pytest.MonkeyPatch, runtime: StarsRuntime
) -> None:
    jobs = record_jobs(monkeypatch)
    for model in (StarsLLM(max_tokens=48, horizon=4, max_rejections=0, seed=1), ChatStars(max_tokens=48, horizon=4)):
        stream = model.stream(PROMPT)  # still held after the loop
        for _chunk in stream:
            break
        assert await finish_reason(jobs[-1]) == "cancelled"
        astream = model.astream(PROMPT)
        async for _chunk in astream:
            break
        assert await finish_reason(jobs[-1]) == "cancelled"
        assert jobs[-1].requests[0].stats.accepted_tokens < 48
    assert len(jobs) == 4


# ---------------------------------------------------------------------------------------------- examples
@pytest.mark.parametrize("name", ["langchain_chain", "langchain_agent_tool", "langchain_batch_stream"])
def test_examples_run_on_the_embedded_models(name, monkeypatch, capsys):
    monkeypatch.setenv("STARS_EXAMPLE_MAX_TOKENS", "8")
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip() and "Traceback" not in out
