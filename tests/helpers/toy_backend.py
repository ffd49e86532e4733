"""A toy policy backend for tests: no model, no KV cache. Rows are token lists and every sampled
token is a letter drawn uniformly from the row's own random stream (never EOS), so anything above
the `PolicyBackend` seam can run without a model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stars_plugins.backends.protocol import RoundOutput
from stars_plugins.backends.sampling import BatchSampler, RowSampling
from stars_plugins.prompts import PreparedPrompt, PromptOptions

EOS = 26  # tokens 0..25 are the letters a..z


class ToyBatch:
    """Each row is a token list; a row draws letters uniformly with its own random stream."""

    def __init__(self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]):
        self.seqs = [list(p) for p, n in zip(prompts, copies, strict=True) for _ in range(n)]
        self.sampler = BatchSampler(sampling, "cpu")

    @property
    def num_rows(self) -> int:
        return len(self.seqs)

    def run_round(self, budgets, boundary=None, forced=None) -> RoundOutput:
        forced = forced or {}
        steps = max(budgets, default=0)
        tokens = torch.full((self.num_rows, steps), EOS)
        lengths = torch.zeros(self.num_rows, dtype=torch.long)
        restore = [len(s) for s in self.seqs]
        for s in range(steps):
            draws = torch.tensor([s < budget and r not in forced for r, budget in enumerate(budgets)])
            letters = self.sampler(torch.zeros(self.num_rows, 26), draws)  # uniform, each row its own stream
            live = torch.tensor([s < budget for budget in budgets])
            for r, budget in enumerate(budgets):
                if s < budget:
                    token = forced[r][s] if r in forced else int(letters[r])
                    tokens[r, s] = token
                    self.seqs[r].append(token)
                    lengths[r] += 1
            self.sampler.observe(tokens[:, s], live)  # constrained rows' grammars follow the tokens
        complete = self.sampler.complete() if self.sampler.constrained else None
        return RoundOutput(tokens, lengths, torch.zeros(self.num_rows, dtype=torch.bool), restore, complete=complete)

    def rollback(self, rows, out) -> None:
        for r in rows:
            del self.seqs[r][out.restore[r] :]
        self.sampler.rollback(list(rows), [int(out.lengths[r]) for r in rows])

    def select_rows(self, source) -> None:
        self.seqs = [list(self.seqs[i]) for i in source]
        self.sampler.select(list(source))

    def merge(self, other: ToyBatch) -> None:
        self.seqs += other.seqs
        self.sampler.extend(other.sampler.state())

    def mergeable(self) -> bool:
        return True

    def compact(self) -> None:
        pass

    def free(self) -> None:
        self.seqs, self.sampler = [], BatchSampler([], "cpu")


class ToyBackend:
    name = "toy"
    eos_token_ids = (EOS,)
    pad_token_id = EOS
    context_window = 1024
    tokenizer = None
    supports_boundary = False
    has_chat_template = False

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(97 + t) for t in token_ids if t < 26)

    def token_ids(self, text: str) -> list[int]:
        return [ord(c) - 97 for c in text if "a" <= c <= "z"]

    def render(self, prompt, options: PromptOptions, index: int = 0) -> tuple[list[int], str]:
        return [1, 2, 3], prompt

    def prepare(self, prompts, options: PromptOptions) -> list[PreparedPrompt]:
        return [PreparedPrompt(i, p, tuple(self.render(p, options, i)[0]), p) for i, p in enumerate(prompts)]

    def open_batch(self, prompts, copies, sampling) -> ToyBatch:
        assert len(sampling) == sum(copies)
        return ToyBatch(prompts, copies, sampling)
