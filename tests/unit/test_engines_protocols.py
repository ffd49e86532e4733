"""Request bodies pinned per engine, and real response bodies parsed (no server needed).

Sources of the bodies: llama.cpp from `tools/server` of the llama.cpp vendored in the
llama-cpp-python 0.3.36 sdist (server-schema.cpp fields, server-task.cpp `to_json_non_oaicompat`,
and a body captured from that server, see tests/serving); vLLM from
`vllm/entrypoints/openai/completion/protocol.py` (`CompletionRequest`, `CompletionResponse`);
SGLang from its documentation's `/generate` output (structured outputs page) and
`python/sglang/srt/sampling/sampling_params.py`.
"""

from __future__ import annotations

import pytest

from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import SegmentRequest
from stars_plugins.backends.remote.sglang import SGLangProtocol
from stars_plugins.backends.remote.vllm import VLLMProtocol, supports_token_ids
from stars_plugins.errors import ServingError

REQUEST = SegmentRequest(prompt=(1, 9690, 198), max_tokens=4, temperature=0.7, top_k=0, top_p=0.9, seed=1234)


# ---------------------------------------------------------------- llama.cpp
def test_llamacpp_request_body_is_token_ids_with_every_extra_sampler_off():
    assert LlamaCppProtocol().request_body(REQUEST, "ignored") == {
        "prompt": [1, 9690, 198],
        "n_predict": 4,
        "temperature": 0.7,
        "top_k": 0,
        "top_p": 0.9,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "dry_multiplier": 0.0,
        "xtc_probability": 0.0,
        "mirostat": 0,
        "seed": 1234,
        "cache_prompt": True,
        "return_tokens": True,
        "stream": False,
        "response_fields": ["tokens", "stop_type", "truncated", "tokens_predicted"],
    }


def test_llamacpp_parses_length_and_eos_stops():
    protocol = LlamaCppProtocol()
    length = {"tokens": [504, 3458, 28, 314], "stop_type": "limit", "truncated": False, "tokens_predicted": 4}
    assert protocol.parse_response(length, REQUEST).tokens == [504, 3458, 28, 314]
    assert not protocol.parse_response(length, REQUEST).hit_eos
    eos = {"tokens": [30, 2], "stop_type": "eos", "truncated": False, "tokens_predicted": 2}
    result = protocol.parse_response(eos, REQUEST)
    assert result.tokens == [30, 2] and result.hit_eos


def test_llamacpp_full_context_is_an_error_not_a_short_segment():
    body = {"tokens": [5], "stop_type": "limit", "truncated": True, "tokens_predicted": 1}
    with pytest.raises(ServingError, match="context is full"):
        LlamaCppProtocol().parse_response(body, REQUEST)


def test_llamacpp_server_info_reads_the_slot_context():
    models = {
        "object": "list",
        "data": [
            {
                "id": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "object": "model",
                "owned_by": "llamacpp",
                "meta": {"n_ctx": 512, "n_ctx_train": 8192},
            }
        ],
    }
    info = LlamaCppProtocol().server_info(models)
    assert info.model == "SmolLM2-135M-Instruct.Q4_1.gguf" and info.context_window == 512


# ---------------------------------------------------------------- vLLM
VLLM_RESPONSE = {  # the fields of vLLM's CompletionResponse / CompletionResponseChoice
    "id": "cmpl-3f1c",
    "object": "text_completion",
    "created": 1732700000,
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "choices": [
        {
            "index": 0,
            "text": " Paris.",
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
            "token_ids": [12095, 13, 151645],
            "prompt_logprobs": None,
            "prompt_token_ids": [1, 9690, 198],
        }
    ],
    "service_tier": None,
    "system_fingerprint": None,
    "usage": {"prompt_tokens": 3, "total_tokens": 6, "completion_tokens": 3, "prompt_tokens_details": None},
    "kv_transfer_params": None,
}


def test_vllm_request_body_sends_ids_and_asks_for_ids():
    assert VLLMProtocol().request_body(REQUEST, "Qwen/Qwen2.5-7B-Instruct") == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "prompt": [1, 9690, 198],
        "max_tokens": 4,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 1234,
        "n": 1,
        "stream": False,
        "return_token_ids": True,
    }


def test_vllm_legacy_servers_are_asked_for_ids_through_logprobs():
    body = VLLMProtocol(legacy_token_ids=True).request_body(REQUEST, None)
    assert "model" not in body and "return_token_ids" not in body
    assert body["logprobs"] == 0 and body["return_tokens_as_token_ids"] is True
    legacy = {
        "choices": [
            {
                "index": 0,
                "text": "a b",
                "finish_reason": "length",
                "stop_reason": None,
                "logprobs": {
                    "text_offset": [0, 1],
                    "token_logprobs": [-0.1, -0.2],
                    "tokens": ["token_id:64", "token_id:293"],
                    "top_logprobs": [None, None],
                },
            }
        ]
    }
    result = VLLMProtocol(legacy_token_ids=True).parse_response(legacy, REQUEST)
    assert result.tokens == [64, 293] and not result.hit_eos


def test_vllm_parses_token_ids_and_eos_from_finish_reason():
    result = VLLMProtocol().parse_response(VLLM_RESPONSE, REQUEST)
    assert result.tokens == [12095, 13, 151645] and result.hit_eos
    length = {**VLLM_RESPONSE, "choices": [{**VLLM_RESPONSE["choices"][0], "finish_reason": "length"}]}
    assert not VLLMProtocol().parse_response(length, REQUEST).hit_eos


def test_vllm_server_info_and_versions():
    models = {
        "object": "list",
        "data": [
            {
                "id": "Qwen/Qwen2.5-7B-Instruct",
                "object": "model",
                "owned_by": "vllm",
                "root": "Qwen/Qwen2.5-7B-Instruct",
                "max_model_len": 32768,
            }
        ],
    }
    info = VLLMProtocol().server_info(models)
    assert info.model == "Qwen/Qwen2.5-7B-Instruct" and info.context_window == 32768
    assert supports_token_ids("0.10.2") and supports_token_ids("0.11.0rc1+cu128") and supports_token_ids(None)
    assert not supports_token_ids("0.10.1.1") and not supports_token_ids("0.8.5")


# ---------------------------------------------------------------- SGLang
SGLANG_RESPONSE = {  # from SGLang's documentation (structured outputs, /generate)
    "text": '{"name": "Paris", "population": 2147000}',
    "output_ids": [5018, 609, 794, 330, 60704, 498, 330, 45541, 794, 220, 11584, 7007, 15, 92, 128009],
    "meta_info": {
        "id": "cd36e001ba044471a8f414302fdc9303",
        "finish_reason": {"type": "stop", "matched": 128009},
        "prompt_tokens": 50,
        "weight_version": "default",
        "num_retractions": 0,
        "reasoning_tokens": 0,
        "completion_tokens": 15,
        "cached_tokens": 1,
        "cached_tokens_details": {"device": 1, "host": 0},
        "dp_rank": None,
        "e2e_latency": 0.1667276918888092,
    },
}


def test_sglang_request_body_uses_input_ids_and_sampling_params():
    assert SGLangProtocol().request_body(REQUEST, "any") == {
        "input_ids": [1, 9690, 198],
        "sampling_params": {
            "max_new_tokens": 4,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "sampling_seed": 1234,
        },
        "stream": False,
    }


def test_sglang_parses_output_ids_with_the_eos_id_last():
    request = SegmentRequest(prompt=(1,), max_tokens=16, temperature=0.0, top_k=0, top_p=1.0, seed=0)
    result = SGLangProtocol().parse_response(SGLANG_RESPONSE, request)
    assert result.hit_eos and result.tokens[-1] == 128009 and len(result.tokens) == 15
    length = {**SGLANG_RESPONSE, "meta_info": {"finish_reason": {"type": "length", "length": 16}}}
    assert not SGLangProtocol().parse_response(length, request).hit_eos


def test_sglang_abort_is_an_error_with_its_message():
    body = {"text": "", "output_ids": [], "meta_info": {"finish_reason": {"type": "abort", "message": "out of memory"}}}
    with pytest.raises(ServingError, match="out of memory"):
        SGLangProtocol().parse_response(body, REQUEST)


# ---------------------------------------------------------------- shared checks
@pytest.mark.parametrize(
    "protocol, body",
    [
        (LlamaCppProtocol(), {"content": "text only", "stop_type": "limit"}),
        (VLLMProtocol(), {"choices": [{"index": 0, "text": "text only", "finish_reason": "length"}]}),
        (SGLangProtocol(), {"text": "text only", "meta_info": {"finish_reason": {"type": "length"}}}),
    ],
)
def test_a_response_without_ids_is_an_error_never_retokenised_text(protocol, body):
    with pytest.raises(ServingError, match="no token ids"):
        protocol.parse_response(body, REQUEST)


def test_more_tokens_than_asked_for_is_an_error():
    body = {"tokens": [1, 2, 3, 4, 5], "stop_type": "limit", "truncated": False}
    with pytest.raises(ServingError, match="at most 4"):
        LlamaCppProtocol().parse_response(body, REQUEST)


# ---------------------------------------------------------------- top logprobs (entropy boundaries)
CARDS = SegmentRequest(prompt=(1, 9690, 198), max_tokens=2, temperature=1.0, top_k=0, top_p=1.0, seed=3, top_logprobs=3)
LLAMACPP_PROBS = {  # captured from llama-server (0.3.36 sdist) with n_probs=3
    "tokens": [49, 2682],
    "stop_type": "limit",
    "truncated": False,
    "tokens_predicted": 2,
    "completion_probabilities": [
        {
            "id": 49,
            "token": "A",
            "bytes": [65],
            "logprob": -0.38282057642936707,
            "top_logprobs": [
                {"id": 49, "token": "A", "bytes": [65], "logprob": -0.38282057642936707},
                {"id": 504, "token": "The", "bytes": [84, 104, 101], "logprob": -2.472151279449463},
                {"id": 57, "token": "I", "bytes": [73], "logprob": -4.229036808013916},
            ],
        },
        {
            "id": 2682,
            "token": "equ",
            "bytes": [101, 113, 117],
            "logprob": -0.15355774760246277,
            "top_logprobs": [
                {"id": 2682, "token": "equ", "bytes": [101, 113, 117], "logprob": -0.15355774760246277},
                {"id": 85, "token": "e", "bytes": [101], "logprob": -2.858241081237793},
                {"id": 385, "token": "qu", "bytes": [113, 117], "logprob": -3.7991018295288086},
            ],
        },
    ],
}


def test_top_logprobs_are_asked_for_in_each_engines_own_terms():
    llama = LlamaCppProtocol().request_body(CARDS, None)
    assert llama["n_probs"] == 3 and llama["post_sampling_probs"] is False
    assert llama["response_fields"][-1] == "completion_probabilities"
    vllm = VLLMProtocol().request_body(CARDS, None)
    assert vllm["logprobs"] == 3 and vllm["return_tokens_as_token_ids"] is True and vllm["return_token_ids"] is True
    sglang = SGLangProtocol().request_body(CARDS, None)
    assert sglang["return_logprob"] is True and sglang["top_logprobs_num"] == 3


def test_top_logprobs_are_read_per_generated_token():
    llama = LlamaCppProtocol().parse_response(LLAMACPP_PROBS, CARDS)
    assert llama.tokens == [49, 2682] and llama.top_logprobs[1][85] == pytest.approx(-2.858241081237793)
    vllm_body = {
        "choices": [
            {
                "index": 0,
                "text": "Ae",
                "finish_reason": "length",
                "token_ids": [49, 2682],
                "logprobs": {
                    "text_offset": [0, 1],
                    "token_logprobs": [-0.38, -0.15],
                    "tokens": ["token_id:49", "token_id:2682"],
                    "top_logprobs": [
                        {"token_id:49": -0.38, "token_id:504": -2.47},
                        {"token_id:2682": -0.15, "token_id:85": -2.86},
                    ],
                },
            }
        ]
    }
    assert VLLMProtocol().parse_response(vllm_body, CARDS).top_logprobs == [
        {49: -0.38, 504: -2.47},
        {2682: -0.15, 85: -2.86},
    ]
    sglang_body = {
        "text": "Ae",
        "output_ids": [49, 2682],
        "meta_info": {
            "finish_reason": {"type": "length", "length": 2},
            "output_token_logprobs": [[-0.38, 49, "A"], [-0.15, 2682, "equ"]],
            "output_top_logprobs": [[[-0.38, 49, "A"], [-2.47, 504, "The"]], [[-0.15, 2682, "equ"], [-2.86, 85, "e"]]],
        },
    }
    assert SGLangProtocol().parse_response(sglang_body, CARDS).top_logprobs == [
        {49: -0.38, 504: -2.47},
        {2682: -0.15, 85: -2.86},
    ]
