"""Both framework adapters run their policy on a live llama-server (`policy=URL`, `policy_tokenizer=`)."""

from __future__ import annotations

import pytest

from stars_plugins.models import embedded_policy_file

pytestmark = pytest.mark.serving

TOKENIZER = str(embedded_policy_file())


def accept_all(prompts, responses):
    return [1.0] * len(responses)


def test_langchain_and_llamaindex_adapters_use_the_served_policy(llama_server):
    from langchain_stars import StarsLLM
    from llama_index.llms.stars import StarsLLM as IndexStarsLLM

    settings = {"reward": accept_all, "horizon": 4, "max_tokens": 8, "temperature": 0.0}
    chain = StarsLLM(policy=llama_server.url, policy_tokenizer=TOKENIZER, **settings)
    engine = IndexStarsLLM(policy=llama_server.url, policy_tokenizer=TOKENIZER, **settings)

    assert type(chain.runtime.policy).__name__ == "RemotePolicy"
    assert chain.runtime.policy is engine.runtime.policy  # one loaded remote policy per process
    text = chain.invoke("Name a colour.")
    assert text and text == engine.complete("Name a colour.").text  # greedy: the same tokens both ways
