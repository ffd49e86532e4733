"""A toy policy backend for tests: no model, no KV cache. Rows are token lists and every sampled
token is a letter drawn uniformly from the row's own random stream (never EOS), so anything above
the `PolicyBackend` seam can run without a model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stars_plugins.backends.protocol import RoundOutput, SegmentDone
from stars_plugins.backends.sampling import BatchSampler, RowSampling
from stars_plugins.prompts import PreparedPrompt, PromptOptions

EOS = 26  # tokens 0..25 are the letters a..z


class ToyBatch:
    """Each row is a token list; a row draws letters uniformly with its own random stream."""

    def __init__(self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]):
        self.seqs = [list(p) for p, n in zip(prompts, copies, strict=True) for _ in range(n)]
        self.sampler = BatchSampler(sampling, "cpu")
        self.segs: list[dict | None] = [None] * len(self.seqs)  # each row's current segment

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

    def begin(self, rows, budgets, forced=None, boundaries=None) -> None:
        forced = forced or {}
        for r, budget in zip(rows, budgets, strict=True):
            replay = list(forced[r]) if r in forced else None
            budget = budget if replay is None else min(budget, len(replay))
            self.segs[r] = {"start": len(self.seqs[r]), "budget": budget, "forced": replay, "n": 0, "told": False}

    def advance(self, steps) -> list[SegmentDone]:
        for _ in range(steps):
            live = [s is not None and s["n"] < s["budget"] for s in self.segs]
            if not any(live):
                break
            draws = torch.tensor([on and s["forced"] is None for on, s in zip(live, self.segs, strict=True)])
            letters = self.sampler(torch.zeros(self.num_rows, 26), draws, mask_in_place=True)
            chosen = torch.full((self.num_rows,), EOS)
            for r, s in enumerate(self.segs):
                if live[r]:
                    chosen[r] = s["forced"][s["n"]] if s["forced"] is not None else int(letters[r])
                    self.seqs[r].append(int(chosen[r]))
                    s["n"] += 1
            self.sampler.observe(chosen, torch.tensor(live))  # constrained rows' grammars follow the tokens
        complete = self.sampler.complete() if self.sampler.constrained else None
        done = []
        for r, s in enumerate(self.segs):
            if s is not None and s["n"] >= s["budget"] and not s["told"]:
                s["told"] = True
                flag = None if complete is None else complete[r]
                done.append(SegmentDone(r, self.seqs[r][s["start"] :], complete=flag))
        return done

    def rollback(self, rows, out=None) -> None:
        for r in rows:
            if out is not None:
                count = int(out.lengths[r])
                del self.seqs[r][out.restore[r] :]
            elif self.segs[r] is not None:
                count = len(self.seqs[r]) - self.segs[r]["start"]
                del self.seqs[r][self.segs[r]["start"] :]
                self.segs[r] = None
            else:
                continue
            self.sampler.rollback([r], [count])  # the grammar takes back the segment's tokens

    def select_rows(self, source) -> None:
        self.seqs = [list(self.seqs[i]) for i in source]
        self.segs = [None if self.segs[i] is None else dict(self.segs[i]) for i in source]
        self.sampler.select(list(source))

    def merge(self, other: ToyBatch) -> None:
        self.seqs += other.seqs
        self.segs += other.segs
        self.sampler.extend(other.sampler.state())

    def mergeable(self) -> bool:
        return True

    def compact(self) -> None:
        pass

    def free(self) -> None:
        self.seqs, self.segs, self.sampler = [], [], BatchSampler([], "cpu")


class ToyBackend:
    name = "toy"
    eos_token_ids = (EOS,)
    pad_token_id = EOS
    context_window = 1024
    tokenizer = None
    supports_boundary = False
    per_row_clocks = True
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
