"""Structured output on serving engines: each engine's structured-output fields pinned per
constraint kind (llama.cpp `json_schema`/`grammar`, vLLM `structured_outputs` and the older
`guided_*`, SGLang `json_schema`/`regex`/`ebnf`); no server, no tokenizer. The one-round design end
to end: tests/integration/test_engines_structured.py.

Sources of the field names: llama.cpp `tools/server` of llama-cpp-python 0.3.36 (`json_schema`,
`grammar`); vLLM `vllm/sampling_params.py` `StructuredOutputsParams` (json, regex, choice, grammar,
json_object; the `guided_*` request fields were removed in 0.12); SGLang
`python/sglang/srt/sampling/sampling_params.py` (json_schema, regex, ebnf).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("xgrammar")

from stars_plugins import Constraint, ConstraintError
from stars_plugins.backends.remote.llamacpp import LlamaCppProtocol
from stars_plugins.backends.remote.protocol import SegmentRequest
from stars_plugins.backends.remote.sglang import SGLangProtocol
from stars_plugins.backends.remote.structured import EngineConstraintError
from stars_plugins.backends.remote.vllm import VLLMProtocol

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}},
        "meta": {"const": {"properties": {"x": 1}}},
    },
    "required": ["name"],
}
CLOSED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pet": {
            "type": "object",
            "properties": {"kind": {"enum": ["cat", "dog"]}},
            "required": ["kind"],
            "additionalProperties": False,
        },
        "tags": {
            "type": "array",
            "items": {"type": "object", "properties": {"t": {"type": "string"}}, "additionalProperties": False},
        },
        "meta": {"const": {"properties": {"x": 1}}},  # data, left as it is
    },
    "required": ["name"],
    "additionalProperties": False,
}
GRAMMAR = 'root ::= "yes" | "no"'


def request(constraint: Constraint) -> SegmentRequest:
    return SegmentRequest((1, 2), 64, 1.0, 40, 1.0, 7, constraint=constraint)


# ---------------------------------------------------------------- request bodies, pinned
def test_llamacpp_fields():
    body = LlamaCppProtocol().request_body(request(Constraint.json_schema(SCHEMA)), None)
    assert body["json_schema"] == CLOSED and body["n_predict"] == 64 and "grammar" not in body
    loose = LlamaCppProtocol().request_body(request(Constraint.json_schema(SCHEMA, strict=False)), None)
    assert loose["json_schema"] == SCHEMA  # not strict: extra properties stay allowed, as the client's grammar
    assert LlamaCppProtocol().request_body(request(Constraint.json_object()), None)["json_schema"] == {"type": "object"}
    choice = LlamaCppProtocol().request_body(request(Constraint.choice(['say "hi"', "b\\c", "é"])), None)
    assert choice["grammar"] == 'root ::= "say \\"hi\\"" | "b\\\\c" | "\\u00e9"'
    assert LlamaCppProtocol().request_body(request(Constraint.grammar(GRAMMAR, "gbnf")), None)["grammar"] == GRAMMAR
    assert "json_schema" not in LlamaCppProtocol().request_body(SegmentRequest((1,), 4, 1.0, 0, 1.0, 1), None)


def test_llamacpp_refuses_what_its_server_cannot_take():
    for constraint in (Constraint.regex("[a-z]+"), Constraint.grammar("start: /[a-z]+/", "lark")):
        with pytest.raises(EngineConstraintError, match="llama.cpp cannot carry") as info:
            LlamaCppProtocol().request_body(request(constraint), None)
        assert isinstance(info.value, ConstraintError) and "gbnf" in str(info.value)


def test_vllm_structured_outputs_and_the_older_guided_fields():
    def fields(constraint, legacy=False):
        body = VLLMProtocol(legacy_token_ids=legacy).request_body(request(constraint), "m")
        return {k: v for k, v in body.items() if k == "structured_outputs" or k.startswith("guided_")}

    assert fields(Constraint.json_schema(SCHEMA)) == {"structured_outputs": {"json": CLOSED}}
    assert fields(Constraint.json_object()) == {"structured_outputs": {"json_object": True}}
    assert fields(Constraint.regex("[a-z]+")) == {"structured_outputs": {"regex": "[a-z]+"}}
    assert fields(Constraint.choice(["a", "b"])) == {"structured_outputs": {"choice": ["a", "b"]}}
    assert fields(Constraint.grammar(GRAMMAR)) == {"structured_outputs": {"grammar": GRAMMAR}}
    assert fields(Constraint.json_schema(SCHEMA), legacy=True) == {"guided_json": CLOSED}
    assert fields(Constraint.json_object(), legacy=True) == {"guided_json": {"type": "object"}}
    assert fields(Constraint.regex("[a-z]+"), legacy=True) == {"guided_regex": "[a-z]+"}
    assert fields(Constraint.choice(["a", "b"]), legacy=True) == {"guided_choice": ["a", "b"]}
    assert fields(Constraint.grammar(GRAMMAR), legacy=True) == {"guided_grammar": GRAMMAR}


def test_sglang_sampling_params():
    def params(constraint):
        return SGLangProtocol().request_body(request(constraint), None)["sampling_params"]

    assert json.loads(params(Constraint.json_schema(SCHEMA))["json_schema"]) == CLOSED  # a JSON text
    assert json.loads(params(Constraint.json_object())["json_schema"]) == {"type": "object"}
    assert params(Constraint.regex("[a-z]+"))["regex"] == "[a-z]+"
    assert params(Constraint.choice(["a", "b"]))["ebnf"] == 'root ::= "a" | "b"'
    assert params(Constraint.grammar(GRAMMAR))["ebnf"] == GRAMMAR
    assert params(Constraint.grammar(GRAMMAR))["max_new_tokens"] == 64
    with pytest.raises(EngineConstraintError, match="SGLang cannot carry"):
        params(Constraint.grammar("start: /[a-z]+/", "lark"))
