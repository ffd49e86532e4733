"""The policy-backend seam: a toy backend (no model, no KV cache) runs every strategy through the
runtime and the scheduler, so nothing above the seam depends on the transformers backend."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from stars_plugins import StarsConfig, StarsRuntime
from stars_plugins.decoding.backend import PolicyBackend, PolicyBatch, RoundOutput
from stars_plugins.decoding.sampling import RowSampling
from stars_plugins.errors import ConfigError
from stars_plugins.policy.prompts import PreparedPrompt, PromptOptions
from stars_plugins.rewards.base import CallableReward

EOS = 26  # tokens 0..25 are the letters a..z


class ToyBatch:
    """Each row is a token list; a row draws letters uniformly with its own generator."""

    def __init__(self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]):
        self.seqs = [list(p) for p, n in zip(prompts, copies, strict=True) for _ in range(n)]
        self.sampling = list(sampling)

    @property
    def num_rows(self) -> int:
        return len(self.seqs)

    def run_round(self, budgets, boundary=None, forced=None) -> RoundOutput:
        forced = forced or {}
        steps = max(budgets, default=0)
        tokens = torch.full((self.num_rows, steps), EOS)
        lengths = torch.zeros(self.num_rows, dtype=torch.long)
        restore = [len(s) for s in self.seqs]
        for r, budget in enumerate(budgets):
            for s in range(budget):
                token = forced[r][s] if r in forced else int(
                    torch.randint(26, (), generator=self.sampling[r].generator))
                tokens[r, s] = token
                self.seqs[r].append(token)
                lengths[r] += 1
        return RoundOutput(tokens, lengths, torch.zeros(self.num_rows, dtype=torch.bool), restore)

    def rollback(self, rows, out) -> None:
        for r in rows:
            del self.seqs[r][out.restore[r]:]

    def select_rows(self, source) -> None:
        self.seqs = [list(self.seqs[i]) for i in source]
        self.sampling = [self.sampling[i] for i in source]

    def merge(self, other: ToyBatch) -> None:
        self.seqs += other.seqs
        self.sampling += other.sampling

    def mergeable(self) -> bool:
        return True

    def compact(self) -> None:
        pass

    def free(self) -> None:
        self.seqs, self.sampling = [], []


class ToyBackend:
    name = "toy"
    eos_token_ids = (EOS,)
    pad_token_id = EOS
    context_window = 1024
    tokenizer = None
    supports_boundary = False

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(97 + t) for t in token_ids if t < 26)

    def prepare(self, prompts, options: PromptOptions) -> list[PreparedPrompt]:
        return [PreparedPrompt(i, p, (1, 2, 3), p) for i, p in enumerate(prompts)]

    def open_batch(self, prompts, copies, sampling) -> ToyBatch:
        return ToyBatch(prompts, copies, sampling)


def vowels(prompts, responses):
    """Share of vowels: a reward the toy policy can be steered by."""
    return [sum(c in "aeiou" for c in r) / max(len(r), 1) for r in responses]


@pytest.fixture
def toy() -> StarsRuntime:
    return StarsRuntime(ToyBackend(), reward=CallableReward(vowels))  # type: ignore[arg-type]


def test_the_toy_backend_satisfies_the_protocols():
    assert isinstance(ToyBackend(), PolicyBackend)
    assert isinstance(ToyBatch([], [], []), PolicyBatch)


@pytest.mark.parametrize("strategy", ["stars", "vanilla", "best_of_n"])
def test_every_strategy_runs_on_any_backend(toy, strategy):
    config = StarsConfig(strategy=strategy, horizon=4, max_new_tokens=12, num_candidates=3, seed=1,
                         target_reward=0.3, alpha=1.0, acceptance="hard", max_rejections=5)
    results = toy.generate(["p", "q"], config)
    for r in results:
        assert r.finish_reason == "length" and len(r.token_ids) == 12
        assert r.text == ToyBackend().decode(r.token_ids)
        assert r.reward is not None
    if strategy == "stars":  # rejections happened and accepted segments passed the threshold
        assert sum(r.stats.rejections for r in results) > 0
        assert all(s.reward >= 0.3 or s.forced for r in results for s in r.segments)


def test_stars_steers_the_toy_policy_towards_the_reward(toy):
    prompts = [f"p{i}" for i in range(8)]
    plain = toy.generate(prompts, StarsConfig(strategy="vanilla", horizon=4, max_new_tokens=16, seed=3))
    steered = toy.generate(prompts, StarsConfig(horizon=4, max_new_tokens=16, seed=3, target_reward=0.5,
                                                alpha=1.0, acceptance="hard", num_candidates=4))
    mean = lambda results: sum(r.reward for r in results) / len(results)  # noqa: E731
    assert mean(steered) > mean(plain) + 0.1


def test_a_boundary_strategy_is_refused_by_a_backend_without_boundaries(toy):
    [result] = toy.generate(["p"], StarsConfig(strategy="cards", max_new_tokens=8), raise_errors=False)
    assert result.finish_reason == "error" and isinstance(result.error, ConfigError)
    assert "does not support" in str(result.error)
