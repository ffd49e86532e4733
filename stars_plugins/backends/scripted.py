"""`ScriptedPolicy`: a policy that writes answers you give it, for testing agents and tool calls
without a model's whims (LangChain's `GenericFakeChatModel`, LlamaIndex's `MockLLM`, but below the
seam: the whole STARS path runs).

A script maps the rendered prompt (text) to the answer the policy should write. Every token still
goes through the batched sampler, so a row's constraint (a forced tool call's JSON Schema, a
structured-output schema) masks it exactly as for a real model, and rejections, resampling and
streaming behave as they do in production. The scripted token gets a large logit and every other
token a small one: greedy or low-temperature rows write the script; where a constraint forbids the
scripted token, the sampler takes an allowed one.

```python
from stars_plugins import StarsRuntime
from stars_plugins.backends.scripted import ScriptedPolicy

call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
policy = ScriptedPolicy(tokenizer, lambda prompt: call)
runtime = StarsRuntime(policy)
```

An answer already begun by the prompt (a forced call's opening written for the model) is
continued, not repeated: the policy writes the part of the answer that the prompt does not end with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from stars_plugins.backends.protocol import RoundOutput
from stars_plugins.backends.sampling import BatchSampler, RowSampling
from stars_plugins.prompts import PromptRenderer, TokenizerSide

#: The rendered prompt text -> the answer the policy writes.
Script = Callable[[str], str]

_SCRIPTED_LOGIT = 30.0  # the scripted token's logit; every other token has 0


class ScriptedPolicy(TokenizerSide):
    """A `PolicyBackend` whose rows write `script(prompt_text)` token by token through the sampler.

    `tokenizer`: a Hugging Face tokenizer (its chat template renders prompts, tools included);
    `context_window`: what prompts must fit in."""

    supports_boundary = False
    supports_constraints = True

    def __init__(self, tokenizer: Any, script: Script, *, name: str = "scripted", context_window: int = 8192):
        self.tokenizer = tokenizer
        self.script = script
        self.name = name
        self.key = ("scripted", id(self))
        eos = tokenizer.eos_token_id
        self.eos_token_ids: tuple[int, ...] = (int(eos),) if eos is not None else ()
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos or 0)
        self.context_window = context_window
        self.renderer = PromptRenderer(tokenizer, name, context_window)
        self.vocab_size = len(tokenizer)
        self._compiler: Any = None
        self._compiler_lock = threading.Lock()

    def compile_constraint(self, constraint: Any) -> Any:
        from stars_plugins.constraints import ConstraintCompiler

        with self._compiler_lock:
            if self._compiler is None:
                self._compiler = ConstraintCompiler(self.tokenizer, self.vocab_size, self.eos_token_ids)
        return self._compiler.compile(constraint)

    def answer_ids(self, prompt_ids: Sequence[int]) -> list[int]:
        """The token ids the policy writes after `prompt_ids`: the script's answer, minus what the
        prompt already ends with, then EOS."""
        prompt = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=False)
        answer = self.script(prompt)
        begun = next((k for k in range(len(answer), 0, -1) if prompt.endswith(answer[:k])), 0)
        return [*self.token_ids(answer[begun:]), *self.eos_token_ids[:1]]

    def open_batch(
        self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ) -> ScriptedBatch:
        return ScriptedBatch(self, prompts, copies, sampling)

    def __repr__(self) -> str:
        return f"ScriptedPolicy({self.name!r})"


class ScriptedBatch:
    """Rows of a `ScriptedPolicy`: each row knows its answer and how much of it it has written."""

    def __init__(
        self,
        policy: ScriptedPolicy,
        prompts: Sequence[Sequence[int]],
        copies: Sequence[int],
        sampling: Sequence[RowSampling],
    ):
        self.policy = policy
        answers = [policy.answer_ids(p) for p in prompts]
        self.answers = [a for a, n in zip(answers, copies, strict=True) for _ in range(n)]
        self.written: list[list[int]] = [[] for _ in self.answers]
        self.sampler = BatchSampler(sampling, "cpu")

    @property
    def num_rows(self) -> int:
        return len(self.answers)

    def _logits(self) -> torch.Tensor:
        logits = torch.zeros(self.num_rows, self.policy.vocab_size)
        eos = self.policy.eos_token_ids[0] if self.policy.eos_token_ids else 0
        for r, (answer, written) in enumerate(zip(self.answers, self.written, strict=True)):
            logits[r, answer[len(written)] if len(written) < len(answer) else eos] = _SCRIPTED_LOGIT
        return logits

    def run_round(self, budgets, boundary=None, forced=None) -> RoundOutput:
        forced = forced or {}
        steps = max(budgets, default=0)
        eos = torch.tensor(self.policy.eos_token_ids, dtype=torch.long)
        tokens = torch.full((self.num_rows, steps), self.policy.pad_token_id, dtype=torch.long)
        lengths = torch.zeros(self.num_rows, dtype=torch.long)
        hit_eos = torch.zeros(self.num_rows, dtype=torch.bool)
        restore = [len(w) for w in self.written]
        live = torch.tensor([b > 0 for b in budgets], dtype=torch.bool)
        for s in range(steps):
            live &= torch.tensor([s < b for b in budgets], dtype=torch.bool)
            if not bool(live.any()):
                break
            is_forced = torch.tensor([r in forced and s < len(forced[r]) for r in range(self.num_rows)])
            sampled = self.sampler(self._logits(), live & ~is_forced)
            chosen = torch.tensor(
                [forced[r][s] if bool(is_forced[r]) else int(sampled[r]) for r in range(self.num_rows)]
            )
            chosen = torch.where(live, chosen, self.policy.pad_token_id)
            self.sampler.observe(chosen, live)
            for r in range(self.num_rows):
                if bool(live[r]):
                    self.written[r].append(int(chosen[r]))
            tokens[:, s] = chosen
            lengths += live.long()
            eos_now = live & ~is_forced & torch.isin(chosen, eos)
            hit_eos |= eos_now
            live &= ~eos_now
        complete = self.sampler.complete() if self.sampler.constrained else None
        return RoundOutput(tokens, lengths, hit_eos, restore, complete=complete)

    def rollback(self, rows: Sequence[int], out: RoundOutput) -> None:
        for r in rows:
            del self.written[r][out.restore[r] :]
        self.sampler.rollback(list(rows), [int(out.lengths[r]) for r in rows])

    def select_rows(self, source: Sequence[int]) -> None:
        self.answers = [self.answers[i] for i in source]
        self.written = [list(self.written[i]) for i in source]
        self.sampler.select(list(source))

    def merge(self, other: ScriptedBatch) -> None:
        self.answers += other.answers
        self.written += other.written
        self.sampler.extend(other.sampler.state())

    def mergeable(self) -> bool:
        return True

    def compact(self) -> None:
        pass

    def free(self) -> None:
        self.answers, self.written, self.sampler = [], [], BatchSampler([], "cpu")
