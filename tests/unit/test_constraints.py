"""Structured-output constraints without a model: construction and its errors, the config field,
per-row grammar state (mask, observe, rollback, fork on copy, resume) and the batched sampler's
masks, on a character-level toy vocabulary."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import xgrammar

from stars_plugins import ConfigError, Constraint, ConstraintError, StarsConfig
from stars_plugins.backends.sampling import BatchSampler, RowSampling
from stars_plugins.cli.main import main as cli_main
from stars_plugins.constraints import ConstraintChecker, GrammarRows, RowGrammar, Validity
from stars_plugins.constraints.compiled import ConstraintCompiler

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

# ------------------------------------------------------------------ Constraint values


def test_constraints_are_hashable_values_that_keep_the_schema_key_order():
    a = Constraint.json_schema(SCHEMA)
    b = Constraint.json_schema(json.dumps(SCHEMA))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert list(a.schema["properties"]) == ["name", "age"]  # properties are generated in this order
    assert Constraint.choice(["yes", "no", "yes"]).options == ("yes", "no")
    assert Constraint.regex("[0-9]+") != Constraint.regex("[0-9]*")
    assert Constraint.json_object().kind == "json_object"
    assert Constraint.grammar('root ::= "a" | "b"').syntax == "ebnf"


def test_a_pydantic_model_class_is_taken_as_its_json_schema():
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    c = Constraint.json_schema(Person)
    assert c.schema["required"] == ["name", "age"]


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: Constraint.json_schema("{not json"), "not valid JSON"),
        (lambda: Constraint.json_schema({"type": "objectx"}), "invalid schema at type"),
        (lambda: Constraint.json_schema({"type": "object", "required": "name"}), "invalid schema at required"),
        (lambda: Constraint.json_schema([1, 2]), "must be a JSON object"),
        (lambda: Constraint.json_schema({"type": "array", "uniqueItems": True}), "'uniqueItems'"),
        (lambda: Constraint.json_schema({"properties": {"a": {"not": {"type": "string"}}}}), "at #/properties/a"),
        (lambda: Constraint.json_schema({"$ref": "#/$defs/missing"}), "missing"),
        (lambda: Constraint.regex("[a-"), "Unclosed '['"),
        (lambda: Constraint.regex(""), "non-empty"),
        (lambda: Constraint.grammar('root ::= "a" undefined_rule'), "undefined_rule"),
        (lambda: Constraint.grammar("root ::= ", syntax="ebnf"), "grammar"),
        (lambda: Constraint.grammar('root ::= "a"', syntax="peg"), "unknown syntax"),
        (lambda: Constraint.choice([]), "non-empty list"),
        (lambda: Constraint.choice("yes"), "list of strings"),
        (lambda: Constraint.choice(["a", ""]), "non-empty strings"),
    ],
)
def test_bad_constraints_raise_a_constraint_error_naming_the_problem(build, named):
    with pytest.raises(ConstraintError, match=None) as info:
        build()
    assert named in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_strict_false_drops_an_unenforceable_keyword_with_a_warning():
    with pytest.warns(UserWarning, match="dropped keyword 'uniqueItems'"):
        c = Constraint.json_schema({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, strict=False)
    assert "uniqueItems" not in c.schema


def test_the_config_takes_a_constraint_and_keeps_it_through_copies_and_dumps():
    c = Constraint.json_schema(SCHEMA)
    config = StarsConfig(constraint=c)
    assert config.updated(horizon=4).constraint is c
    assert StarsConfig(**config.model_dump()).constraint == c
    assert StarsConfig(**json.loads(json.dumps(config.model_dump(mode="json")))).constraint == c
    with pytest.raises(ConfigError, match="constraint=.*must be a Constraint"):
        StarsConfig(constraint={"type": "object"})
    with pytest.raises(ConfigError, match="constraint"):
        StarsConfig(constraint="[0-9]+")


# ------------------------------------------------------------------ grammar rows on a toy vocabulary

VOCAB = [*'{}[]":,0123456789abcdefghijklmnopqrstuvwxyz ', "<eos>", '"name"', "true"]
EOS = VOCAB.index("<eos>")


COMPILER = ConstraintCompiler.from_tokenizer_info(xgrammar.TokenizerInfo(VOCAB, stop_token_ids=[EOS]))


def ids(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text]


def grammar(constraint: Constraint, accepted: str = "") -> RowGrammar:
    return RowGrammar(COMPILER.compile(constraint), tuple(ids(accepted)), max_rollback=64, key=constraint)


def allowed(rows: GrammarRows, row: int) -> set[str]:
    logits = torch.zeros(len(rows.rows), len(VOCAB))
    masked = rows.mask(logits)
    return {VOCAB[i] for i in range(len(VOCAB)) if masked[row, i] > float("-inf")}


def test_masks_follow_the_grammar_and_leave_unconstrained_rows_alone():
    rows = GrammarRows([grammar(Constraint.regex("ab+")), None], len(VOCAB), torch.device("cpu"))
    assert allowed(rows, 0) == {"a"}
    assert allowed(rows, 1) == set(VOCAB)  # the unconstrained row is untouched
    rows.observe(torch.tensor(ids("a") * 2), torch.tensor([True, True]))
    assert allowed(rows, 0) == {"b"}
    rows.observe(torch.tensor(ids("b") * 2), torch.tensor([True, True]))
    assert allowed(rows, 0) == {"b", "<eos>"}  # complete: the stop token is allowed here only
    assert rows.complete() == [True, True]


def test_rollback_takes_a_rejected_segment_back_and_copies_fork():
    choice = Constraint.choice(["abc", "abd", "xyz"])
    rows = GrammarRows([grammar(choice)], len(VOCAB), torch.device("cpu"))
    for ch in "ab":
        rows.observe(torch.tensor(ids(ch)), torch.tensor([True]))
    assert allowed(rows, 0) == {"c", "d"}
    rows.rollback([0], [2])
    assert allowed(rows, 0) == {"a", "x"}
    rows.observe(torch.tensor(ids("a")), torch.tensor([True]))
    rows.select([0, 0, 0])  # an accepted candidate copied over its siblings
    rows.observe(torch.tensor(ids("bbb")), torch.tensor([True, True, False]))  # row 2 sat this step out
    assert allowed(rows, 0) == allowed(rows, 1) == {"c", "d"}
    assert allowed(rows, 2) == {"b"}  # its own state: the copies do not share a matcher
    rows.observe(torch.tensor(ids("cdb")), torch.tensor([True, True, True]))
    assert rows.complete() == [True, True, False]
    rows.rollback([1], [1])
    assert allowed(rows, 1) == {"c", "d"} and allowed(rows, 0) == {"<eos>"}


def test_state_resumes_a_row_mid_grammar():
    c = Constraint.json_schema(SCHEMA)
    rows = GrammarRows([grammar(c)], len(VOCAB), torch.device("cpu"))
    for ch in '{"name": "ab':
        rows.observe(torch.tensor(ids(ch)), torch.tensor([True]))
    [state] = rows.state([grammar(c)])
    assert state.accepted == tuple(ids('{"name": "ab'))
    resumed = GrammarRows([state], len(VOCAB), torch.device("cpu"))
    assert allowed(resumed, 0) == allowed(rows, 0)
    with pytest.raises(ValueError, match="does not fit"):
        GrammarRows([grammar(c, accepted="}")], len(VOCAB), torch.device("cpu"))


def sample_steps(sampler: BatchSampler, steps: int, logit_seeds: list[int]) -> list[list[int]]:
    """Each row sees its own logits (seeded per row), whatever else is in the batch."""
    out = []
    generators = [torch.Generator().manual_seed(s) for s in logit_seeds]
    for _ in range(steps):
        logits = torch.stack([torch.randn(len(VOCAB), generator=g) for g in generators])
        tokens = sampler(logits)
        sampler.observe(tokens, torch.ones(len(tokens), dtype=torch.bool))
        out.append(tokens.tolist())
    return out


def test_the_sampler_masks_constrained_rows_only_and_rows_stay_batch_independent():
    regex = Constraint.regex("[0-9]{3}:[a-z]{2}")
    free = RowSampling(1.0, 0, 1.0, seed=7)
    fenced = RowSampling(1.0, 5, 1.0, seed=11, grammar=grammar(regex))
    plain_alone = sample_steps(BatchSampler([free], "cpu"), 6, [1])
    mixed = sample_steps(BatchSampler([free, fenced], "cpu"), 6, [1, 2])
    assert [step[0] for step in mixed] == [step[0] for step in plain_alone]
    text = "".join(VOCAB[step[1]] for step in mixed)
    assert text[:3].isdigit() and text[3] == ":" and text[4:6].isalpha()
    # the constrained row alone draws what it drew in the mixed batch (its draws are its own)
    fenced_alone = sample_steps(BatchSampler([fenced], "cpu"), 6, [2])
    assert "".join(VOCAB[s[0]] for s in fenced_alone) == text


def test_an_unconstrained_batch_builds_no_grammar_state():
    sampler = BatchSampler([RowSampling(1.0, 40, 1.0, seed=1)] * 3, "cpu")
    assert sampler.grammars is None and not sampler.constrained
    sampler.select([0, 0, 2])
    assert sampler.grammars is None


def test_the_checker_tells_invalid_partial_and_complete_outputs():
    checker = ConstraintChecker(Constraint.json_schema(SCHEMA), COMPILER)
    assert checker.check_tokens(ids('{"name": "al')) is Validity.PARTIAL
    assert checker.check_tokens(ids('{"name": "al", "age": 3}')) is Validity.COMPLETE
    assert checker.check_tokens(ids('{"age": 3}')) is Validity.INVALID  # name comes first, and is required
    assert checker.check_text('{"name": "al", "age": 31}') is Validity.COMPLETE
    assert checker.check_text('{"name": 5') is Validity.INVALID
    assert checker.check_text('{\n  "name":"al",\n  "age":31\n}') is Validity.COMPLETE  # unmasked text: any layout
    compact = ConstraintChecker(Constraint.json_schema(SCHEMA), COMPILER, any_whitespace=False)
    assert compact.check_text('{"name":"al","age":31}') is Validity.INVALID  # what the mask would have written differs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checker.check_text("") is Validity.PARTIAL


def test_a_bad_schema_file_fails_before_any_model_loads(tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("stars_plugins.runtime.StarsRuntime.from_pretrained", no_loading)
    bad = tmp_path / "schema.json"
    bad.write_text('{"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": true}}}')
    assert cli_main(["generate", "hi", "--json-schema", str(bad)]) == 2
    assert "uniqueItems" in capsys.readouterr().err
    assert cli_main(["generate", "hi", "--json-schema", str(tmp_path / "missing.json")]) == 2
    assert cli_main(["generate", "hi", "--regex", "[a-"]) == 2
    assert "Unclosed" in capsys.readouterr().err


@pytest.mark.parametrize("vocab_size", [1, 31, 32, 33, 1000, 49_152])
def test_the_cpu_mask_matches_xgrammars_kernel_bit_for_bit(vocab_size):
    from stars_plugins.constraints.rows import apply_bitmask_cpu

    generator = torch.Generator().manual_seed(vocab_size)
    bitmask = xgrammar.allocate_token_bitmask(5, vocab_size)
    bitmask.copy_(torch.randint(-(2**31), 2**31 - 1, bitmask.shape, generator=generator, dtype=torch.int64).int())
    bitmask[0] = -1  # everything allowed
    bitmask[1] = 0  # nothing allowed
    logits = torch.randn(5, vocab_size + 7, generator=generator)  # wider than the vocabulary
    ours, theirs = logits.clone(), logits.clone()
    apply_bitmask_cpu(ours, bitmask, vocab_size)
    xgrammar.apply_token_bitmask_inplace(theirs, bitmask, vocab_size=vocab_size)
    # xgrammar's kernel also applies the bits past `vocab_size` in the last word; the callers set
    # every column past the vocabulary to -inf themselves (`GrammarRows.apply`), so only the
    # vocabulary is compared and ours leaves the rest alone
    assert torch.equal(ours[:, :vocab_size], theirs[:, :vocab_size])
    assert torch.isinf(ours[1, :vocab_size]).all() and torch.equal(ours[0], logits[0])
    assert torch.equal(ours[:, vocab_size:], logits[:, vocab_size:])
