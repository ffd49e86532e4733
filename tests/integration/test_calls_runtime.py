"""The call surface (`stars_plugins.calls`) on the embedded policy: streams left mid-loop cancel their
request, and the context window is checked on the prepared prompt."""

from __future__ import annotations

import asyncio

import pytest

from stars_plugins import PromptTooLongError, StarsRuntime, calls

PROMPT = "Describe a sunny afternoon at the beach."


@pytest.mark.slow
async def test_runtime_streams_cancel_when_a_loop_over_them_is_left(runtime: StarsRuntime) -> None:
    budget = {"max_new_tokens": 48, "horizon": 4, "max_rejections": 0, "seed": 1}
    stream = runtime.stream(PROMPT, **budget)
    for _segment in stream:
        break
    astream = runtime.astream(PROMPT, **budget)
    async for _segment in astream:
        break
    for held in (stream, astream):
        (request,) = held.job.requests  # type: ignore[union-attr]
        for _ in range(1200):  # wait (bounded) for the engine to reach the round boundary
            if request.done:
                break
            await asyncio.sleep(0.05)
        assert request.finish_reason == "cancelled" and request.stats.accepted_tokens < 48
    assert runtime.generate([PROMPT], max_new_tokens=4)[0].text.strip()  # still ready


@pytest.mark.slow
def test_context_window_below_the_model_is_checked_on_the_prepared_prompt(runtime: StarsRuntime) -> None:
    call = calls.prepare_call(runtime, {"max_new_tokens": 16}, {}, owner="X", context_window=64)
    with pytest.raises(PromptTooLongError, match="context window is 64 tokens") as raised:
        call.generate(["word " * 60])
    prepared = runtime.policy.render("word " * 60, call.config)[0]
    assert raised.value.prompt_tokens == len(prepared) and raised.value.limit == 64
    assert calls.prepare_call(runtime, {"max_new_tokens": 4}, {}, owner="X", context_window=64).generate(["Hi"])
