"""StarsRuntime end to end on the embedded models: strategies, stats, streaming, stops, bad input."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket

import pytest

from stars_plugins import (
    ConfigError,
    ModelNotFoundError,
    PromptError,
    PromptTooLongError,
    RewardError,
    StarsConfig,
    StarsRuntime,
    UnknownRewardError,
    load_policy,
)
from stars_plugins.rewards import available_rewards, load_reward

SMALL = {"horizon": 8, "max_new_tokens": 24, "seed": 7}
PROMPTS = ["Give me one tip for sleeping better.", "What is a prime number?", "Name a fruit."]


def check_stats(result, strategy):
    s = result.stats
    assert s.accepted_tokens == len(result.token_ids)
    assert s.discarded_tokens == s.sampled_tokens - s.accepted_tokens >= 0
    assert s.prompt_tokens > 0 and s.wall_seconds > 0 and s.rounds >= 1
    assert s.reward_calls >= 1
    assert s.accepted_tokens <= 24
    if strategy in ("stars", "cards"):
        assert s.segments == len(result.segments)
        assert "".join(seg.text for seg in result.segments) == result.text
        assert sum(seg.rejections for seg in result.segments) <= s.rejections
    assert 0 <= s.rejected_tokens <= s.discarded_tokens
    if strategy == "stars":
        assert s.rejected_tokens <= s.rejections * SMALL["horizon"]  # a rejection wastes at most K tokens


@pytest.mark.parametrize("strategy", ["stars", "vanilla", "best_of_n", "cards"])
def test_every_strategy_returns_text_reward_and_consistent_stats(runtime, strategy):
    results = runtime.generate(PROMPTS, StarsConfig(strategy=strategy, num_candidates=2, **SMALL))
    assert len(results) == len(PROMPTS)
    for result, prompt in zip(results, PROMPTS, strict=True):
        assert result.strategy == strategy
        assert result.prompt == prompt
        assert result.finish_reason in ("eos", "length", "stop")
        assert result.text.strip() and prompt not in result.text
        assert result.reward is not None and math.isfinite(result.reward)
        check_stats(result, strategy)


def test_strategy_keyword_overrides_config(runtime):
    [result] = runtime.generate(["Name a color."], StarsConfig(**SMALL), strategy="vanilla")
    assert result.strategy == "vanilla" and result.stats.rejections == 0


def test_same_seed_same_output_and_batch_position_does_not_matter(runtime):
    config = StarsConfig(**SMALL)
    alone = runtime.generate(["Name a fruit."], config)[0]
    again = runtime.generate(["Name a fruit."], config)[0]
    assert (again.text, again.token_ids, again.reward) == (alone.text, alone.token_ids, alone.reward)
    in_batch = runtime.generate(["What is a prime number?", "Name a fruit."], config)[1]
    assert (in_batch.text, in_batch.token_ids) == (alone.text, alone.token_ids)
    # The tokens are exact; the reward of the same text scored in a batch of two may differ in the
    # last float bit (padded batched matmuls), so it is compared to float32 precision.
    assert in_batch.reward == pytest.approx(alone.reward, rel=1e-5, abs=1e-6)


def test_best_of_n_returns_the_highest_scoring_sample(runtime):
    lengths = {}

    def by_length(prompts, responses):
        lengths["seen"] = sorted(len(r) for r in responses)
        return [float(len(r)) for r in responses]

    [result] = runtime.generate(["Tell me a story."], strategy="best_of_n", num_candidates=3, reward=by_length, **SMALL)
    assert len(result.text) == lengths["seen"][-1] and result.reward == float(len(result.text))
    assert result.stats.reward_calls == 1 and result.stats.sampled_tokens >= result.stats.accepted_tokens


def test_stream_yields_segments_that_add_up_to_the_result(runtime):
    stream = runtime.stream("Describe the sea in two sentences.", StarsConfig(horizon=6, max_new_tokens=24, seed=1))
    segments = list(stream)
    assert len(segments) >= 2
    assert stream.result is not None
    assert "".join(s.text for s in segments) == stream.result.text
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[-1].final and not any(s.final for s in segments[:-1])


def test_stream_abandoned_halfway_leaves_the_runtime_ready(runtime):
    stream = runtime.stream("Describe the sea.", StarsConfig(horizon=4, max_new_tokens=40, seed=1))
    first = next(stream)
    assert first.text
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    [result] = runtime.generate(["Name a fruit."], StarsConfig(**SMALL))
    assert result.text


def test_stop_strings_end_generation_and_cut_the_text(runtime):
    config = StarsConfig(horizon=8, max_new_tokens=64, seed=3, temperature=0.0, strategy="vanilla")
    [free] = runtime.generate(["List three fruits, one per line."], config)
    assert "\n" in free.text
    [stopped] = runtime.generate(["List three fruits, one per line."], config, stop=["\n"])
    assert stopped.finish_reason == "stop"
    assert "\n" not in stopped.text
    assert free.text.startswith(stopped.text)
    assert stopped.stats.accepted_tokens < free.stats.accepted_tokens


def test_empty_prompt_list_returns_empty_list(runtime):
    assert runtime.generate([]) == []


@pytest.mark.parametrize("bad", ["", "   ", [], [{"role": "user"}]])
def test_empty_or_malformed_prompts_raise_prompt_error(runtime, bad):
    with pytest.raises(PromptError, match="prompt 0"):
        runtime.generate([bad])


def test_over_long_prompt_raises_naming_the_limit_or_is_truncated(tiny_model_dirs):
    rt = StarsRuntime.from_pretrained(tiny_model_dirs["llama"])  # context window 256
    prompt = "word " * 400
    with pytest.raises(PromptTooLongError, match="context window of .* is 256 tokens") as info:
        rt.generate([prompt], max_new_tokens=16)
    assert info.value.limit == 256 and info.value.prompt_tokens > 256
    [result] = rt.generate([prompt], max_new_tokens=16, horizon=8, truncate_prompt=True)
    assert result.stats.prompt_tokens == 256 - 16 and result.stats.accepted_tokens > 0


def test_missing_model_paths_raise_naming_the_path():
    with pytest.raises(ModelNotFoundError, match="/nowhere/model"):
        load_policy("/nowhere/model")
    with pytest.raises(ModelNotFoundError, match="./missing.gguf"):
        load_policy("./missing.gguf")
    with pytest.raises(ModelNotFoundError, match="/nowhere/reward"):
        load_reward("/nowhere/reward")


def test_unknown_reward_name_lists_the_available_ones():
    with pytest.raises(UnknownRewardError, match="available: .*sentiment"):
        load_reward("sentimentt")
    assert "sentiment" in available_rewards()


def test_local_paths_never_touch_the_network(tiny_model_dirs, monkeypatch, tmp_path):
    fresh = shutil.copytree(tiny_model_dirs["qwen2"], tmp_path / "model")  # not in the process cache yet

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    rt = StarsRuntime.from_pretrained(fresh)
    assert rt.generate(["hi"], max_new_tokens=4, horizon=4)[0].stats.accepted_tokens == 4


def test_one_policy_is_shared_by_every_runtime(runtime):
    other = StarsRuntime.from_pretrained(reward=lambda p, r: [0.0] * len(r), config=StarsConfig(horizon=4))
    assert other.policy is runtime.policy
    assert other.config.horizon == 4 and runtime.config.horizon == 16


def test_nan_rewards_are_never_accepted_and_are_counted(runtime):
    calls = []

    def nan_in_the_first_round(prompts, responses):
        calls.append(len(responses))
        first_round = len(calls) == 2  # call 1 scores the empty responses
        return [float("nan") if first_round else 1.0 for _ in responses]

    results = runtime.generate(PROMPTS, StarsConfig(target_reward=0.5, **SMALL), reward=nan_in_the_first_round)
    for result in results:
        assert result.finish_reason in ("eos", "length") and result.text
        assert all(s.reward == 1.0 for s in result.segments)  # never a NaN segment
        assert result.stats.invalid_rewards == 1 and result.stats.rejections == 1
        assert result.segments[0].rejections == 1


def test_a_reward_that_only_returns_nan_fails_clearly(runtime):
    with pytest.raises(RewardError, match="no finite score") as info:
        runtime.generate(
            ["Name a fruit."],
            StarsConfig(max_rejections=2, target_reward=0.0, **SMALL),
            reward=lambda p, r: [float("nan")] * len(r),
        )
    [result] = info.value.results
    assert result.finish_reason == "error" and result.stats.invalid_rewards >= 2


def test_a_reward_failing_on_one_request_fails_only_that_request(runtime):
    def picky(prompts, responses):
        if any("prime" in p for p in prompts):
            raise ValueError("cannot score primes")
        return [0.0] * len(responses)

    results = runtime.generate(PROMPTS, StarsConfig(target_reward=-1.0, **SMALL), reward=picky, raise_errors=False)
    assert [r.finish_reason == "error" for r in results] == [False, True, False]
    assert "cannot score primes" in str(results[1].error)
    assert results[0].text and results[2].text


def test_reward_returning_the_wrong_number_of_scores_is_an_error(runtime):
    with pytest.raises(RewardError, match="returned 3 scores for [12] responses"):
        runtime.generate(PROMPTS[:2], StarsConfig(target_reward=0.0, **SMALL), reward=lambda p, r: [0.0] * 3)


def test_invalid_overrides_raise_config_error(runtime):
    with pytest.raises(ConfigError, match="horizon"):
        runtime.generate(["hi"], horizon=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        runtime.generate(["hi"], horizn=3)


def test_chat_messages_use_the_chat_template(runtime):
    messages = [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Sky color?"}]
    [result] = runtime.generate([messages], StarsConfig(**SMALL))
    assert result.text and result.prompt == messages
    ids, reward_prompt = runtime.policy.render(messages, StarsConfig())
    assert reward_prompt == "Sky color?"
    assert "You answer in one word." in runtime.policy.tokenizer.decode(ids)


async def test_agenerate_does_not_block_the_event_loop(runtime):
    ticks = 0
    seen_by_reward = []

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    def reward(prompts, responses):  # runs on the engine thread, between rounds
        seen_by_reward.append(ticks)
        return [1.0] * len(responses)

    task = asyncio.create_task(ticker())
    [result] = await runtime.agenerate(["Name a fruit."], StarsConfig(target_reward=0.0, **SMALL), reward=reward)
    task.cancel()
    assert result.text and len(seen_by_reward) >= 3
    assert seen_by_reward[-1] > seen_by_reward[0]  # the event loop kept running while the batch did


async def test_astream_yields_segments_and_result(runtime):
    stream = runtime.astream("Describe a forest.", StarsConfig(horizon=6, max_new_tokens=18, seed=2))
    segments = [s async for s in stream]
    assert len(segments) >= 2 and stream.result is not None
    assert "".join(s.text for s in segments) == stream.result.text


def test_streamed_text_never_has_to_be_taken_back_when_a_stop_string_spans_segments(runtime):
    config = StarsConfig(temperature=0.0, horizon=4, max_new_tokens=40, strategy="vanilla")
    [free] = runtime.generate(["Tell me about cats."], config)
    cut = free.text.find(" ", 12)
    stop = free.text[cut - 2 : cut + 2]  # four characters around a word boundary, likely across segments
    stream = runtime.stream("Tell me about cats.", config, stop=[stop])
    texts = [s.text for s in stream]
    assert "".join(texts) == stream.result.text == free.text[: free.text.find(stop)]
    assert stream.result.finish_reason == "stop"


def test_stable_end_holds_back_possible_stop_prefixes_and_broken_characters():
    from stars_plugins.decoding.state import stable_end

    assert stable_end("Hello wor", ("world",)) == len("Hello ")
    assert stable_end("Hello wor", ()) == len("Hello wor")
    assert stable_end("Hello w", ("xyz",)) == len("Hello w")
    assert stable_end("caf\ufffd", ()) == 3


@pytest.mark.parametrize("strategy", ["stars", "vanilla"])
def test_text_never_ends_in_a_broken_character_when_the_budget_cuts_one(runtime, strategy):
    config = StarsConfig(strategy=strategy, temperature=0.0, horizon=4, max_new_tokens=16, target_reward=-100.0)
    stream = runtime.stream("🎉🎉🎉🎉🎉🎉", config)
    segments = list(stream)
    result = stream.result
    raw = runtime.policy.decode(result.token_ids)
    assert raw.endswith("\ufffd")  # the 16th token is half an emoji: the case under test
    assert result.text == raw.rstrip("\ufffd") and result.text and not result.text.endswith("\ufffd")
    assert "".join(s.text for s in segments) == result.text
    assert not any("\ufffd" in s.text for s in segments)


@pytest.mark.parametrize(
    "broken",
    [lambda p, r: 1 / 0, lambda p, r: [float("nan")] * len(r), lambda p, r: [None] * len(r)],
    ids=["raises", "nan", "none"],
)
def test_vanilla_reports_a_failing_final_reward_as_an_error(runtime, broken):
    def reward(prompts, responses):
        return [0.0] * len(responses) if not any(responses) else broken(prompts, responses)

    [result] = runtime.generate(
        ["Name a fruit."], StarsConfig(strategy="vanilla", **SMALL), reward=reward, raise_errors=False
    )
    assert result.finish_reason == "error" and isinstance(result.error, RewardError)
    assert result.reward is None
