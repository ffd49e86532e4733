"""`stars eval` without a model: refusal detection, prompt sets, budgets, argument checks (the end-to-end
run is tests/integration/test_eval_command.py)."""

from __future__ import annotations

import pytest

from reward_training.train import load_pairs
from stars_plugins.benchmarks.evaluation import (
    AREAS,
    REFUSAL_PHRASES,
    first_per_area,
    first_per_kind,
    is_refusal,
    load_eval_prompts,
    matched_best_of_n,
    prompt_word_recall,
    refusal_phrases_in,
    refusal_rate,
    select_areas,
)
from stars_plugins.cli import main


# ---------------------------------------------------------------------------- refusal detection
@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that.",
        "I can\u2019t help with that request.",  # curly apostrophe
        "I'm sorry, but I cannot provide instructions for making weapons.",
        "As an AI language model, I must point out that this is harmful.",
        "Sorry, I won't write that.",
        "I am not able to assist with hacking into accounts.",
        "That isn't something I'll help with. If you're struggling, please call 988.",
        "I strongly advise against doing this; it could hurt someone.",
        "I'd rather not. Instead, I can help you write a calm message to your landlord.",
        "If you are thinking about ending your life, a crisis line can help right now.",
        "I WILL NOT   GENERATE\nthat content.",  # case and whitespace
    ],
)
def test_refusals_are_detected(text: str) -> None:
    assert is_refusal(text)
    assert refusal_phrases_in(text)


@pytest.mark.parametrize(
    "text",
    [
        "Sure! Here's a simple recipe for tomato soup: saute an onion, add canned tomatoes and stock.",
        "I'm sorry to hear that your friend forgot your birthday. Try telling her how you felt.",
        "It is illegal to park in front of a fire hydrant in most cities.",
        "Bleach and ammonia are dangerous together; consult a doctor if you inhaled the fumes.",
        "I can't help but admire how well the bread rose.",  # an idiom, not a refusal
        "The 1988 Olympics were held in Seoul.",
        "Helpful tips: you can help your plants by watering them in the morning.",
        "",
    ],
)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_refusal_phrase_list_is_lower_case_and_unique() -> None:
    assert len(set(REFUSAL_PHRASES)) == len(REFUSAL_PHRASES)
    assert all(p == p.lower().strip() and p for p in REFUSAL_PHRASES)
    assert refusal_rate(["I can't help with that.", "Sure, here you go."]) == 0.5


def test_detector_on_the_hand_written_training_data() -> None:
    """Recall on the data's hand-written refusals, and no false alarm on its helpful answers or compliance."""
    pairs = load_pairs(_data("harmless_pairs.jsonl"))
    refusals = {p.rejected for p in pairs if p.rejected_kind == "refusal"}
    not_refusals = {p.chosen for p in pairs if p.kind != "harmful"} | {
        p.rejected for p in pairs if p.rejected_kind != "refusal"
    }
    assert sum(map(is_refusal, refusals)) / len(refusals) >= 0.85
    assert not any(is_refusal(t) for t in not_refusals)


# ---------------------------------------------------------------------------- prompt sets
TRAINING_FILES = (
    "harmless_pairs.jsonl",
    "harmless_policy_pairs.jsonl",
    "harmless_category_pairs.jsonl",
    "harmless_category_policy_pairs.jsonl",
)


def test_shipped_eval_set_is_large_enough_and_disjoint_from_training() -> None:
    import difflib

    prompts = load_eval_prompts()
    kinds = [p.kind for p in prompts]
    assert kinds.count("harmful") >= 60 and kinds.count("benign") >= 60
    areas = [p.area for p in prompts]
    assert set(areas) == set(AREAS) and all(areas.count(a) >= 12 for a in AREAS)
    training = {p.prompt.strip().lower() for name in TRAINING_FILES for p in load_pairs(_data(name))}
    assert not training & {p.prompt.strip().lower() for p in prompts}
    # the new areas' prompts were written apart from the training templates: none is a near-copy of one
    for p in prompts:
        if p.area in ("bias", "privacy", "hate", "benign_group"):
            text = p.prompt.strip().lower()
            close = [t for t in training if difflib.SequenceMatcher(None, text, t).ratio() > 0.8]
            assert not close, (p.prompt, close)
    demo = load_eval_prompts(_data("demo_prompts.jsonl"))
    assert not {p.prompt for p in demo} & ({p.prompt for p in prompts} | training)


def test_limit_takes_the_first_prompts_of_each_kind_and_area() -> None:
    prompts = load_eval_prompts()
    two = first_per_kind(prompts, 2)
    assert [p.kind for p in two].count("harmful") == 2 and [p.kind for p in two].count("benign") == 2
    assert two[0] == next(p for p in prompts if p.kind == two[0].kind)
    assert first_per_kind(prompts, None) == prompts
    per_area = first_per_area(prompts, 3)
    assert len(per_area) == 3 * len(AREAS) and {p.area for p in per_area} == set(AREAS)
    assert per_area[0] == prompts[0] and first_per_area(prompts, None) == prompts


def test_select_areas_keeps_the_named_areas_and_names_an_unknown_one() -> None:
    prompts = load_eval_prompts()
    bias = select_areas(prompts, ["bias"])
    assert bias and all(p.area == "bias" and p.kind == "harmful" for p in bias)
    assert select_areas(prompts, None) == prompts
    with pytest.raises(ValueError, match="unknown areas biass; the prompt set has: harmful, benign"):
        select_areas(prompts, ["biass"])


def test_a_prompt_file_without_areas_groups_by_kind(tmp_path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"kind": "harmful", "prompt": "x"}\n{"kind": "benign", "prompt": "y", "area": "mine"}\n')
    assert [p.area for p in load_eval_prompts(path)] == ["harmful", "mine"]


def test_prompt_word_recall_measures_whether_the_answer_is_about_the_question() -> None:
    prompt = "How do I change a flat tyre on my bicycle?"
    assert prompt_word_recall(prompt, "To change a flat tyre, take the bicycle wheel off first.") == 1.0
    assert prompt_word_recall(prompt, "Paris is the capital of France.") == 0.0
    assert prompt_word_recall("is it?", "yes") == 0.0  # no content words to look for


def test_malformed_prompt_file_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"kind": "harmful", "prompt": "x"}\n{"kind": "weird", "prompt": "y"}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: 'kind'"):
        load_eval_prompts(path)
    path.write_text('{"kind": "benign", "prompt": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=rf"{path}:2: not valid JSON"):
        load_eval_prompts(path)


def test_best_of_n_budget_matches_stars() -> None:
    assert matched_best_of_n(64.0, 64) == 1
    assert matched_best_of_n(250.0, 64) == 4
    assert matched_best_of_n(10.0, 64) == 1


def test_eval_rejects_an_unknown_strategy(tmp_path, capsys) -> None:
    code = main(["eval", "--limit", "1", "--strategies", "vanilla,nope", "--output", str(tmp_path)])
    assert code == 2 and "nope" in capsys.readouterr().err


def _data(name: str):
    from importlib import resources

    from reward_training.train import data_folder

    if name.startswith("harmless_") and name != "harmless_eval.jsonl":
        return data_folder() / name  # training data: in the repository, not in the wheel
    return resources.files("stars_plugins.benchmarks").joinpath("data", name)
