"""`llama_index.llms.stars.StarsLLM` on the real embedded models (SmolLM2-135M-Instruct), with small token
budgets. Every test here loads the embedded policy: tests/conftest.py marks this folder `slow`."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import time
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.llms.stars import StarsLLM

from stars_plugins import (
    ConfigError,
    PromptError,
    PromptTooLongError,
    StarsConfig,
    StarsRuntime,
    UnknownRewardError,
)

#: The repository root: the examples (and their documents) are part of the stars-plugins repository.
ROOT = Path(__file__).resolve().parents[4]
PROMPT = "Write one sentence about the sea."
MESSAGES = [
    ChatMessage(role=MessageRole.SYSTEM, content="You answer briefly."),
    ChatMessage(role=MessageRole.USER, content="Name a colour."),
]


@pytest.fixture(scope="module")
def llm(runtime) -> StarsLLM:
    """Engine settings: horizon 4, 12 new tokens, a fixed seed (so complete and stream can be compared)."""
    return StarsLLM(horizon=4, max_new_tokens=12, seed=11)


@pytest.fixture(scope="module")
def completed(llm):
    """`llm.complete(PROMPT)`, computed once: streams of the same prompt must reproduce it exactly."""
    return llm.complete(PROMPT)


def prompt_tokens(runtime, prompt, **settings) -> int:
    """How many tokens the policy sees for `prompt` rendered with `settings`."""
    return len(runtime.policy.render(prompt, StarsConfig(**settings))[0])


def assert_segments(raw: dict, horizon: int, max_new_tokens: int) -> None:
    """Every segment but the last has exactly `horizon` tokens; the counts add up."""
    sizes = [s["tokens"] for s in raw["segments"]]
    assert sizes, raw
    assert all(size == horizon for size in sizes[:-1]), sizes
    assert 0 <= sizes[-1] <= horizon
    stats = raw["stats"]
    assert stats["accepted_tokens"] == sum(sizes) == raw["usage"]["completion_tokens"] <= max_new_tokens
    assert stats["segments"] == len(sizes)
    assert raw["config"]["horizon"] == horizon
    if raw["finish_reason"] == "length":
        assert stats["accepted_tokens"] == max_new_tokens


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- metadata and sharing
def test_metadata_comes_from_the_model(runtime):
    llm = StarsLLM(max_new_tokens=20)  # unit_tests: to_payload() before this never loads the model
    meta = llm.metadata
    assert meta.context_window == runtime.context_window == runtime.policy.context_window
    assert meta.num_output == 20
    assert meta.is_chat_model is runtime.policy.has_chat_template is True
    assert meta.model_name == runtime.model_name
    assert meta.is_function_calling_model is True
    assert StarsLLM(apply_chat_template=False).metadata.is_chat_model is False
    assert StarsLLM(context_window=512).metadata.context_window == 512


def test_instances_share_the_loaded_policy(runtime):
    a = StarsLLM(horizon=4, acceptance="hard")
    b = StarsLLM(horizon=8, max_new_tokens=20, reward="sentiment", temperature=0.5)
    assert a.runtime.policy is b.runtime.policy is runtime.policy
    assert a.runtime is not b.runtime  # settings stay per instance
    given = StarsLLM(runtime=runtime)
    assert given.runtime is runtime
    assert StarsLLM(runtime=runtime, reward=lambda p, r: [0.0] * len(r)).runtime.policy is runtime.policy


# ---------------------------------------------------------------------- completion
def test_complete_returns_new_text_and_stars_stats(completed, runtime):
    response = completed
    raw = response.raw
    assert response.text and response.text == raw["text"]
    assert PROMPT not in response.text and "<|im_start|>" not in response.text  # no echoed prompt
    assert raw["strategy"] == "stars" and raw["reward_model"] == runtime.reward.name
    assert raw["model"] == runtime.model_name
    assert_segments(raw, horizon=4, max_new_tokens=12)
    # the plain prompt went through the policy's chat template
    assert raw["usage"]["prompt_tokens"] == raw["stats"]["prompt_tokens"] == prompt_tokens(runtime, PROMPT)
    assert response.additional_kwargs["completion_tokens"] == raw["stats"]["accepted_tokens"]


def test_stream_complete_yields_cumulative_text_and_deltas(llm, completed):
    complete_text = completed.text
    chunks = list(llm.stream_complete(PROMPT))
    assert len(chunks) >= 2
    for before, after in itertools.pairwise(chunks):
        assert after.text.startswith(before.text) and len(after.text) > len(before.text)
    assert "".join(c.delta for c in chunks) == chunks[-1].text
    assert all(c.delta for c in chunks)
    assert "segment" in chunks[0].raw and "stats" not in chunks[0].raw
    final = chunks[-1].raw
    assert_segments(final, horizon=4, max_new_tokens=12)
    assert final["stats"]["segments"] == len(chunks)
    # same seed, same prompt formatting: streaming produces exactly what complete produced
    assert chunks[-1].text == final["text"] == complete_text


def test_completion_to_prompt_is_applied_the_same_way_in_complete_and_stream(runtime):
    def to_prompt(text: str) -> str:
        return f"Question: {text}\nAnswer:"

    llm = StarsLLM(horizon=4, max_new_tokens=4, seed=3, completion_to_prompt=to_prompt)
    expected = prompt_tokens(runtime, to_prompt(PROMPT), apply_chat_template=False)
    assert expected != prompt_tokens(runtime, PROMPT)
    done = llm.complete(PROMPT)
    streamed = list(llm.stream_complete(PROMPT))[-1]
    assert done.raw["usage"]["prompt_tokens"] == streamed.raw["usage"]["prompt_tokens"] == expected
    assert done.raw["config"]["apply_chat_template"] is False
    assert done.text == streamed.text
    # formatted=True: the prompt is used as given, never formatted twice
    again = llm.complete(to_prompt(PROMPT), formatted=True)
    assert again.raw["usage"]["prompt_tokens"] == expected


def test_system_prompt_becomes_the_system_turn_of_unformatted_prompts(runtime):
    llm = StarsLLM(horizon=4, max_new_tokens=4, system_prompt="You are a poet.")
    direct = llm.complete(PROMPT)
    assert direct.raw["usage"]["prompt_tokens"] == prompt_tokens(runtime, PROMPT, system_prompt="You are a poet.")
    # formatted prompts already carry LlamaIndex's system prompt: it is not added a second time
    formatted = llm.complete(PROMPT, formatted=True)
    assert formatted.raw["usage"]["prompt_tokens"] == prompt_tokens(runtime, PROMPT)


# ---------------------------------------------------------------------- chat
def test_chat_uses_the_policy_chat_template(llm, runtime):
    response = llm.chat(MESSAGES, max_tokens=8)
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content and response.message.content == response.raw["text"]
    as_dicts = [{"role": m.role.value, "content": m.content} for m in MESSAGES]
    assert response.raw["usage"]["prompt_tokens"] == prompt_tokens(runtime, as_dicts)
    assert_segments(response.raw, horizon=4, max_new_tokens=8)

    chunks = list(llm.stream_chat(MESSAGES, max_tokens=8))
    assert len(chunks) >= 2
    assert "".join(c.delta for c in chunks) == chunks[-1].message.content == response.message.content
    assert chunks[-1].raw["usage"]["prompt_tokens"] == response.raw["usage"]["prompt_tokens"]


def test_custom_messages_to_prompt_is_used_as_is(runtime):
    def to_prompt(messages) -> str:
        return "\n".join(f"{m.role.value}: {m.content}" for m in messages) + "\nassistant:"

    llm = StarsLLM(horizon=4, max_new_tokens=4, messages_to_prompt=to_prompt)
    response = llm.chat(MESSAGES)
    assert response.raw["usage"]["prompt_tokens"] == prompt_tokens(
        runtime, to_prompt(MESSAGES), apply_chat_template=False
    )


# ---------------------------------------------------------------------- async
async def test_async_calls_do_not_block_the_event_loop(llm):
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    ticks = 0
    started = time.perf_counter()
    response = await llm.acomplete(PROMPT, max_new_tokens=12)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert response.raw["stats"]["accepted_tokens"] > 0
    # a blocked loop would tick once or twice; a free one ticks about every 5 ms
    assert ticks >= 20 and ticks >= 0.2 * elapsed / 0.005, (ticks, elapsed)


async def test_async_stream_and_chat(llm, completed):
    stream = await llm.astream_complete(PROMPT)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) >= 2
    assert "".join(c.delta for c in chunks) == chunks[-1].text
    assert_segments(chunks[-1].raw, horizon=4, max_new_tokens=12)
    assert chunks[-1].text == completed.text  # same seed, same formatting as the sync complete

    reply = await llm.achat(MESSAGES, max_tokens=8)
    assert reply.message.content and reply.raw["stats"]["accepted_tokens"] <= 8
    chat_stream = await llm.astream_chat(MESSAGES, max_tokens=8)
    chat_chunks = [chunk async for chunk in chat_stream]
    assert "".join(c.delta for c in chat_chunks) == chat_chunks[-1].message.content == reply.message.content


class CountingReward:
    """A reward that counts its calls: generation that goes on keeps calling it."""

    name = "counting"
    default_target = 0.0

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        return [0.0] * len(responses)


def test_leaving_a_stream_early_stops_generation(llm):
    reward = CountingReward()
    # greedy decoding of this prompt runs about 30 tokens (8+ reward calls) before its EOS
    for chunk in llm.stream_complete(PROMPT, max_new_tokens=40, reward=reward, temperature=0):
        assert chunk.delta and "stats" not in chunk.raw  # not the last segment
        break
    # the engine runs ahead of the reader and stops the request at its next round boundary
    for _ in range(100):
        if not llm.runtime.scheduler.busy:
            break
        time.sleep(0.05)
    calls = reward.calls
    assert calls <= 4, calls
    assert llm.complete(PROMPT, max_new_tokens=4).raw["stats"]["accepted_tokens"] <= 4
    assert reward.calls == calls  # nothing ran on after the consumer left


async def test_leaving_an_async_stream_early_stops_generation(llm):
    reward = CountingReward()
    stream = await llm.astream_complete(PROMPT, max_new_tokens=40, reward=reward, temperature=0)
    first = await stream.__anext__()
    assert first.delta and "stats" not in first.raw
    await stream.aclose()
    # the worker stops at its next round boundary: the count settles well before a full run
    previous = -1
    for _ in range(100):
        await asyncio.sleep(0.2)
        if reward.calls == previous:
            break
        previous = reward.calls
    assert reward.calls <= 4, reward.calls
    assert (await llm.acomplete(PROMPT, max_new_tokens=4)).raw["stats"]["accepted_tokens"] <= 4


def record_jobs(monkeypatch):
    jobs = []
    real_start = StarsRuntime.start

    def start(self, *args, **kwargs):
        jobs.append(real_start(self, *args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(StarsRuntime, "start", start)
    return jobs


async def finish_reason(job) -> str | None:
    (request,) = job.requests
    for _ in range(1200):  # wait (bounded) for the engine to reach the round boundary
        if request.done:
            break
        await asyncio.sleep(0.05)
    return request.finish_reason


async def test_leaving_a_loop_over_a_held_stream_cancels_it(llm, monkeypatch):
    jobs = record_jobs(monkeypatch)
    budget = {"max_new_tokens": 48, "max_rejections": 0}
    # Prompts whose answers run past the budget: a short answer could end (EOS) before the engine
    # reaches the round boundary where the cancellation is seen.
    prompt = "Tell me a long, detailed story about a lighthouse keeper and a storm."
    messages = [ChatMessage(role=MessageRole.USER, content=prompt)]
    for open_stream in (lambda: llm.stream_complete(prompt, **budget), lambda: llm.stream_chat(messages, **budget)):
        stream = open_stream()  # held until the next iteration
        for _chunk in stream:
            break
        assert await finish_reason(jobs[-1]) == "cancelled"
    for aopen_stream in (llm.astream_complete, llm.astream_chat):
        astream = await aopen_stream(prompt if aopen_stream == llm.astream_complete else messages, **budget)
        async for _chunk in astream:
            break
        assert await finish_reason(jobs[-1]) == "cancelled"
    assert len(jobs) == 4 and all(job.requests[0].stats.accepted_tokens < 48 for job in jobs)


# ---------------------------------------------------------------------- per-call overrides
def test_per_call_overrides_take_effect(llm):
    response = llm.complete(PROMPT, horizon=6, max_tokens=12)
    assert_segments(response.raw, horizon=6, max_new_tokens=12)
    assert llm.horizon == 4  # the engine's settings are untouched

    # two candidates per segment, hard acceptance, best candidate forced in after one rejected round
    tight = llm.complete(PROMPT, max_tokens=4, acceptance="hard", num_candidates=2, max_rejections=1)
    config = tight.raw["config"]
    assert (config["acceptance"], config["num_candidates"], config["max_rejections"]) == ("hard", 2, 1)
    assert tight.raw["stats"]["rounds"] == 1 and tight.raw["stats"]["accepted_tokens"] <= 4
    assert tight.raw["stats"]["sampled_tokens"] <= 2 * 4

    calls: list[int] = []

    def always_one(prompts, responses):
        calls.append(len(responses))
        return [1.0] * len(responses)

    judged = llm.complete(PROMPT, reward=always_one, target_reward=0.5, max_new_tokens=4)
    assert calls, "the per-call reward model was never asked"
    assert judged.raw["reward_model"].endswith("always_one")
    assert judged.raw["reward"] == 1.0 and judged.raw["stats"]["rejections"] == 0
    assert judged.raw["config"]["target_reward"] == 0.5

    plain = llm.complete(PROMPT, strategy="vanilla", max_new_tokens=4)
    assert plain.raw["strategy"] == "vanilla" and plain.raw["stats"]["rejections"] == 0


def test_batch_complete_runs_prompts_together(llm, runtime):
    prompts = [PROMPT, "Name three fruits."]
    responses = llm.batch_complete(prompts, max_new_tokens=8)
    assert len(responses) == 2
    for prompt, response in zip(prompts, responses, strict=True):
        assert response.text == response.raw["text"]
        assert response.raw["usage"]["prompt_tokens"] == prompt_tokens(runtime, prompt)
        assert_segments(response.raw, horizon=4, max_new_tokens=8)


# ---------------------------------------------------------------------- bad input
def test_invalid_per_call_settings_raise_the_runtime_errors(llm):
    with pytest.raises(ConfigError) as reference:
        StarsConfig(horizon=0)
    with pytest.raises(ConfigError) as raised:
        llm.complete(PROMPT, horizon=0)
    assert str(raised.value) == str(reference.value)
    assert "horizon" in str(raised.value) and "allowed" in str(raised.value)
    with pytest.raises(ConfigError, match="top_p"):
        llm.stream_complete(PROMPT, top_p=0)  # raised at the call, before any iteration
    with pytest.raises(ConfigError, match="temperature"):
        llm.chat(MESSAGES, temperature=-1)
    with pytest.raises(ConfigError, match=r"horizn.*accepted:.*horizon"):
        llm.complete(PROMPT, horizn=8)
    with pytest.raises(ConfigError, match="max_tokens or max_new_tokens"):
        llm.complete(PROMPT, max_tokens=8, max_new_tokens=8)
    with pytest.raises(UnknownRewardError, match="no-such-reward"):
        llm.complete(PROMPT, reward="no-such-reward")
    with pytest.raises(PromptError, match="empty"):
        llm.complete("  ")


async def test_invalid_async_settings_raise_before_generating(llm):
    with pytest.raises(ConfigError, match="beta"):
        await llm.acomplete(PROMPT, beta=0)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        await llm.astream_chat(MESSAGES, max_new_tokens=0)


def test_prompt_too_long_for_the_context_window(llm, runtime):
    small = StarsLLM(context_window=64, max_new_tokens=16)
    with pytest.raises(PromptTooLongError, match=r"context window is 64 tokens") as raised:
        small.complete("word " * 60)
    assert raised.value.limit == 64 and raised.value.max_new_tokens == 16
    with pytest.raises(PromptTooLongError, match=r"context window"):
        list(small.stream_chat([ChatMessage(role=MessageRole.USER, content="word " * 60)]))
    # the model's own window, enforced by the runtime
    with pytest.raises(PromptTooLongError, match=rf"context window of .* is {runtime.context_window} tokens"):
        llm.complete("hello " * runtime.context_window)
    with pytest.raises(ConfigError, match="exceeds the context window"):
        _ = StarsLLM(context_window=runtime.context_window + 1).metadata


# ---------------------------------------------------------------------- LlamaIndex plumbing
def test_callbacks_see_every_call_with_token_counts(runtime):
    llm = StarsLLM(horizon=4, max_new_tokens=4)
    counter = TokenCountingHandler(tokenizer=llm.tokenize)
    debug = LlamaDebugHandler()
    llm.callback_manager = CallbackManager([counter, debug])
    done = llm.complete(PROMPT)
    streamed = list(llm.stream_complete(PROMPT))[-1]
    assert len(debug.get_event_pairs(CBEventType.LLM)) == 2
    usage = [done.raw["usage"], streamed.raw["usage"]]
    assert counter.prompt_llm_token_count == sum(u["prompt_tokens"] for u in usage)
    assert counter.completion_llm_token_count == sum(u["completion_tokens"] for u in usage)
    assert '"reward": null' in llm.to_json()


class _ChatEnds(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "ChatEnds"

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, LLMChatEndEvent):
            self.events.append(event)


def test_query_engine_answers_with_sources_from_the_shipped_documents(runtime):
    example = load_example("llamaindex_rag")
    index = example.build_index()
    llm = StarsLLM(horizon=4, max_new_tokens=12, seed=0)
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)

    handler = _ChatEnds()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        response = engine.query("When is the Lantern Festival held in Port Aldren?")
    finally:
        root.event_handlers.remove(handler)

    shipped = {p.name for p in (ROOT / "examples" / "data").iterdir()}
    names = [n.node.metadata["file_name"] for n in response.source_nodes]
    assert len(names) == 2 and set(names) <= shipped
    assert names[0] == "festival.md"
    assert isinstance(response.response, str) and response.response.strip()
    # the answer came from StarsLLM (chat path, policy chat template), with its STARS stats
    assert len(handler.events) == 1
    raw = handler.events[0].response.raw
    assert handler.events[0].response.message.content.strip() == response.response.strip()
    assert_segments(raw, horizon=4, max_new_tokens=12)
    assert "Lantern Festival" in " ".join(m.content for m in handler.events[0].messages)


def test_rag_example_runs_with_small_budgets(capsys):
    example = load_example("llamaindex_rag")
    response = example.main(
        ["How tall is the Gullstone Lighthouse?", "--max-new-tokens", "8", "--horizon", "4", "--top-k", "1", "--stream"]
    )
    out = capsys.readouterr().out
    assert "A: " in out and "Sources:" in out and "lighthouse.md" in out
    assert response.source_nodes[0].node.metadata["file_name"] == "lighthouse.md"
