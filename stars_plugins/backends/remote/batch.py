"""`RemotePolicy` and `RemoteBatch`: the policy on a serving engine, behind the `PolicyBackend` seam.

The client keeps every row's prefix as token ids and sends them as ids; the engine's generated ids
come back as ids. Text is never re-tokenised between rounds. One round is one segment request per
row, all sent together over a bounded pool of connections; a rejected segment is forgotten by
cutting the row's prefix back (the engine's prefix cache makes the resample cheap); accepting one
of N candidates copies the winner's prefix over its siblings. Nothing lives on the server between
rounds, so a server that restarts loses nothing but its cache.

Structured output: an engine cannot resume its grammar from a prefix the client sends back, so a
constrained request is generated in one round, its whole answer under the engine's own grammar
parameter (`structured.py`; `constrained_config` makes the request's segment its whole budget),
and judged whole. The engine's ids are checked against the constraint on the client
(`RoundOutput.complete`); ids the grammar refuses are never passed on as a valid answer.

Seeds: every segment request carries a seed derived from the request's seed, the row's stream
(and copy index), the prefix length (which segment) and how many times this row has sampled from
that prefix (which attempt), so a request's samples do not depend on what shares its round.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from stars_plugins.backends.protocol import BoundaryRule, RoundOutput, SegmentDone
from stars_plugins.backends.remote.detect import Replica
from stars_plugins.backends.remote.protocol import SegmentRequest, SegmentResult
from stars_plugins.backends.remote.structured import check_engine_takes
from stars_plugins.backends.remote.transport import HttpTransport
from stars_plugins.backends.sampling import RowSampling
from stars_plugins.config import StarsConfig
from stars_plugins.constraints import Constraint, ConstraintCompiler
from stars_plugins.errors import ConfigError, ServingError
from stars_plugins.prompts import PromptRenderer, TokenizerSide

#: The longest segment `StarsConfig.horizon` allows: a constrained answer on an engine is one segment.
MAX_WHOLE_ANSWER = StarsConfig.model_fields["horizon"].metadata[-1].le

#: How many of the most likely tokens' logprobs an engine returns per token for entropy boundaries.
BOUNDARY_TOP_LOGPROBS = 20
_affinity = itertools.count()  # spreads prompts over replicas; a row keeps its replica (its KV cache)


def segment_seed(seed: int, stream: int, salt: int, position: int, attempt: int) -> int:
    """The seed of one segment request: stable across runs and processes, in [0, 2**31)."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{salt}:{position}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def row_seed(sampling: RowSampling) -> tuple[int, int]:
    """(request seed, stream) of a row: `seed`/`stream` fields, or the seed of its torch generator."""
    seed = getattr(sampling, "seed", None)
    if seed is None:
        generator = getattr(sampling, "generator", None)
        seed = generator.initial_seed() if generator is not None else 0
    return int(seed), int(getattr(sampling, "stream", 0) or 0)


@dataclass
class _Row:
    prefix: list[int]  # prompt + accepted tokens (+ this round's segment until the round is judged)
    sampling: RowSampling
    salt: int  # tells apart copies of one request that share seed and stream
    affinity: int  # which replica serves this row
    opened_at: int = 0  # prefix length when the row was opened (its prompt and accepted tokens)
    at_length: int = -1  # prefix length of the last sampled segment ...
    attempt: int = 0  # ... and how many times this row has sampled from it
    start: int = -1  # prefix length where the current segment began (per-row clock)
    future: Future | None = None  # the current segment's request, in flight
    rule: BoundaryRule | None = None  # cuts the current segment when it comes back (CARDS)
    ready: SegmentDone | None = None  # a finished segment not reported yet


class RemotePolicy(TokenizerSide):
    """A policy served by vLLM, SGLang or llama.cpp's server (one or several replicas).

    `tokenizer` is the served model's tokenizer, used to render prompts and decode text only.
    """

    # Entropy boundaries (CARDS) from the top logprobs the engine returns with each token: see
    # `cut_at_boundary`. The entropy is an estimate, so boundaries can differ from in process.
    supports_boundary = True
    # Constraints travel in the engine's own structured-output parameters, one whole answer per
    # round (`constrained_config`); the client checks the ids with the compiled constraint.
    supports_constraints = True
    # Each row's segment request is sent when its previous segment was judged (per-row futures).
    per_row_clocks = True

    def __init__(
        self,
        replicas: Sequence[Replica],
        transport: HttpTransport,
        tokenizer: Any,
        *,
        name: str,
        eos_token_ids: tuple[int, ...],
        pad_token_id: int,
        context_window: int,
        max_concurrency: int = 32,
    ):
        if not replicas:
            raise ConfigError("a remote policy needs at least one server URL")
        self.replicas = list(replicas)
        self.transport = transport
        self.tokenizer = tokenizer
        self.name = name
        self.eos_token_ids = eos_token_ids
        self.pad_token_id = pad_token_id
        self.context_window = context_window
        self.renderer = PromptRenderer(tokenizer, name, context_window)
        self.device = torch.device("cpu")  # where reward models go by default; the policy is elsewhere
        self.key: tuple[Any, ...] | None = None
        self.max_concurrency = max_concurrency
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="stars-remote")
        self._constraint_compiler: ConstraintCompiler | None = None
        self._compiler_lock = threading.Lock()

    @property
    def engine(self) -> str:
        return self.replicas[0].protocol.name

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    # ------------------------------------------------------------------ structured output
    @property
    def constraint_compiler(self) -> ConstraintCompiler:
        """Compiles constraints for the served model's tokenizer (to check the engine's ids)."""
        with self._compiler_lock:
            if self._constraint_compiler is None:
                self._constraint_compiler = ConstraintCompiler(self.tokenizer, len(self.tokenizer), self.eos_token_ids)
            return self._constraint_compiler

    def compile_constraint(self, constraint: Constraint) -> Any:
        return self.constraint_compiler.compile(constraint)

    def constrained_config(self, config: StarsConfig, *, boundary: bool) -> StarsConfig:
        """The config a constrained request runs with here: its whole answer in one segment (the
        engine's grammar starts where the answer starts and cannot resume mid-way), judged whole.
        A constraint this engine cannot carry, a segment rule that cuts answers (CARDS) or a budget
        over one segment's maximum raise `ConfigError` now, before any request is sent."""
        constraint = config.constraint
        if constraint is None:
            return config
        check_engine_takes(self.engine, constraint)
        if boundary:
            raise ConfigError(
                f"strategy {config.strategy!r} cuts answers at entropy boundaries, but on a serving engine "
                f"({self.engine}) a constrained answer is generated whole in one round (the engine's grammar "
                "cannot resume mid-way); use strategy 'stars', 'vanilla' or 'best_of_n'"
            )
        if config.max_new_tokens > MAX_WHOLE_ANSWER:
            raise ConfigError(
                f"max_new_tokens={config.max_new_tokens}: on a serving engine a constrained answer is one "
                f"segment, at most {MAX_WHOLE_ANSWER} tokens; lower max_new_tokens"
            )
        return config if config.horizon == config.max_new_tokens else config.updated(horizon=config.max_new_tokens)

    def open_batch(
        self, prompts: Sequence[Sequence[int]], copies: Sequence[int], sampling: Sequence[RowSampling]
    ) -> RemoteBatch:
        if len(sampling) != sum(copies):
            raise ValueError(f"{len(sampling)} sampling settings for {sum(copies)} rows; pass one per row")
        rows: list[_Row] = []
        for prompt, count in zip(prompts, copies, strict=True):
            affinity = next(_affinity)
            for copy in range(count):
                rows.append(
                    _Row(list(prompt), sampling[len(rows)], salt=copy, affinity=affinity, opened_at=len(prompt))
                )
        return RemoteBatch(self, rows)

    # ------------------------------------------------------------------ one round trip
    def generate(self, requests: Sequence[SegmentRequest], affinities: Sequence[int]) -> list[SegmentResult]:
        """Send every segment request at once (at most `max_concurrency` in flight); fail if any fails."""
        answers = self.generate_each(requests, affinities)
        errors = [a for a in answers if isinstance(a, BaseException)]
        if errors:
            raise _summary(errors, len(answers), self.engine)
        return answers  # type: ignore[return-value]

    def submit(self, request: SegmentRequest, affinity: int) -> Future:
        """Send one segment request without waiting for it."""
        return self._pool.submit(self._one, self.replicas[affinity % len(self.replicas)], request)

    def generate_each(
        self, requests: Sequence[SegmentRequest], affinities: Sequence[int]
    ) -> list[SegmentResult | Exception]:
        """Send every segment request at once; each answer is its result, or the exception that
        failed it (the others are unaffected)."""
        replicas = self.replicas
        futures = [
            self._pool.submit(self._one, replicas[affinity % len(replicas)], request)
            for request, affinity in zip(requests, affinities, strict=True)
        ]
        answers: list[SegmentResult | Exception] = []
        for future in futures:
            try:
                answers.append(future.result())
            except Exception as exc:  # every request finishes; a failure belongs to its own row
                answers.append(exc)
        return answers

    def _one(self, replica: Replica, request: SegmentRequest) -> SegmentResult:
        body = replica.protocol.request_body(request, replica.info.model)
        answer = self.transport.post_json(replica.generate_url, body)
        return replica.protocol.parse_response(answer, request)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.transport.close()

    def __repr__(self) -> str:
        return f"RemotePolicy({self.name!r}, urls={self.urls}, context_window={self.context_window})"


class RemoteBatch:
    """Rows whose prefixes live on the client; each round is one segment request per sampling row."""

    def __init__(self, policy: RemotePolicy, rows: list[_Row]):
        self.policy = policy
        self.rows = rows

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def run_round(
        self,
        budgets: Sequence[int],
        boundary: BoundaryRule | None = None,
        forced: dict[int, Sequence[int]] | None = None,
    ) -> RoundOutput:
        forced = forced or {}
        starts = [len(row.prefix) for row in self.rows]
        segments: list[list[int]] = [[] for _ in self.rows]
        hit_eos = [False] * len(self.rows)
        sampled, requests, affinities = [], [], []
        top_logprobs = BOUNDARY_TOP_LOGPROBS if boundary is not None else 0
        for r, row in enumerate(self.rows):
            if r in forced:
                segments[r] = list(forced[r])
            elif budgets[r] > 0:
                sampled.append(r)
                requests.append(self._request(row, int(budgets[r]), top_logprobs))
                affinities.append(row.affinity)
        answers = self.policy.generate_each(requests, affinities)
        errors = {r: a for r, a in zip(sampled, answers, strict=True) if isinstance(a, BaseException)}
        done = [(r, a) for r, a in zip(sampled, answers, strict=True) if not isinstance(a, BaseException)]
        results = [a for _, a in done]
        if boundary is not None:
            results = cut_at_boundary(results, boundary)
        for (r, _), result in zip(done, results, strict=True):
            segments[r], hit_eos[r] = result.tokens, result.hit_eos
        complete = self._complete(segments, hit_eos, errors)
        steps = max((len(s) for s in segments), default=0)
        tokens = torch.full((len(self.rows), steps), self.policy.pad_token_id, dtype=torch.long)
        for r, segment in enumerate(segments):
            if segment:
                tokens[r, : len(segment)] = torch.tensor(segment, dtype=torch.long)
            self.rows[r].prefix.extend(segment)
        lengths = torch.tensor([len(s) for s in segments], dtype=torch.long)
        eos = torch.tensor(hit_eos, dtype=torch.bool)
        return RoundOutput(tokens, lengths, eos, restore=starts, errors=errors, complete=complete)

    def _complete(
        self, segments: list[list[int]], hit_eos: list[bool], errors: dict[int, BaseException]
    ) -> list[bool] | None:
        """Per row, whether its answer is a complete match of its constraint (None: no row is
        constrained). The engine's ids are replayed through the client's compiled grammar; ids it
        refuses (an engine that reads the schema differently) fail that row's request with a
        `ServingError` naming the token, so they never pass as a valid answer."""
        if all(row.sampling.grammar is None for row in self.rows):
            return None
        complete = [True] * len(self.rows)
        for r, row in enumerate(self.rows):
            if row.sampling.grammar is None or r in errors:
                continue
            complete[r] = self._check_constrained(row, r, segments, hit_eos, errors)
        return complete

    def _check_constrained(
        self, row: _Row, r: int, segments: list[list[int]], hit_eos: list[bool], errors: dict[int, BaseException]
    ) -> bool:
        """Replay `segments[r]` through the client's grammar: whether it is a complete match; ids the
        grammar refuses set `errors[r]` and empty the segment."""
        grammar = row.sampling.grammar
        assert grammar is not None
        # any JSON whitespace: the engine's grammar, not the client's compact mask, laid it out
        checked = self.policy.constraint_compiler.compile(grammar.key, any_whitespace=True)
        accepted, complete = accepted_by(checked, segments[r])
        if accepted < len(segments[r]):
            errors[r] = ServingError(
                f"{self.policy.engine} answered token {accepted} (id {segments[r][accepted]}) of a constrained "
                f"answer outside the constraint ({grammar.key.describe()}): the engine's grammar accepts what "
                "the client's does not. Simplify the schema, or run the policy in process"
            )
            segments[r], hit_eos[r] = [], False
            return False
        return complete

    def _request(self, row: _Row, budget: int, top_logprobs: int) -> SegmentRequest:
        grammar = row.sampling.grammar
        if grammar is not None and (grammar.accepted or len(row.prefix) != row.opened_at):
            raise ConfigError(
                f"a constrained answer on {self.policy.engine} is generated in one round and cannot be resumed "
                "mid-way (the engine's grammar starts at the answer's start); run it through StarsRuntime, "
                "which makes its segment its whole budget"
            )
        position = len(row.prefix)
        if position == row.at_length:
            row.attempt += 1
        else:
            row.at_length, row.attempt = position, 0
        seed, stream = row_seed(row.sampling)
        s = row.sampling
        return SegmentRequest(
            prompt=tuple(row.prefix),
            max_tokens=budget,
            temperature=float(s.temperature),
            top_k=int(s.top_k),
            top_p=float(s.top_p),
            seed=segment_seed(seed, stream, row.salt, position, row.attempt),
            top_logprobs=top_logprobs,
            constraint=None if grammar is None else grammar.key,
        )

    # ------------------------------------------------------------------ per-row clocks
    def begin(
        self,
        rows: Sequence[int],
        budgets: Sequence[int],
        forced: dict[int, Sequence[int]] | None = None,
        boundaries: dict[int, BoundaryRule] | None = None,
    ) -> None:
        """Send a segment request for each of `rows` now; rows in `forced` replay their tokens."""
        forced, boundaries = forced or {}, boundaries or {}
        for r, budget in zip(rows, budgets, strict=True):
            row = self.rows[r]
            row.start, row.rule, row.future, row.ready = len(row.prefix), None, None, None
            if r in forced or budget <= 0:
                tokens = list(forced.get(r, ()))[: max(int(budget), 0)]
                row.prefix.extend(tokens)
                row.ready = SegmentDone(-1, tokens)
                continue
            row.rule = boundaries.get(r)
            top_logprobs = BOUNDARY_TOP_LOGPROBS if row.rule is not None else 0
            row.future = self.policy.submit(self._request(row, int(budget), top_logprobs), row.affinity)

    def advance(self, steps: int) -> list[SegmentDone]:
        """The segments that came back (waiting for the first one when none has yet)."""
        flying = [row.future for row in self.rows if row.future is not None]
        if flying and not any(row.ready is not None for row in self.rows) and not any(f.done() for f in flying):
            wait(flying, return_when=FIRST_COMPLETED)
        done = []
        for r, row in enumerate(self.rows):
            if row.future is not None and row.future.done():
                row.ready = self._landed(row)
            if row.ready is not None:
                ready, row.ready = row.ready, None
                done.append(SegmentDone(r, ready.tokens, ready.hit_eos, ready.error, ready.complete))
        return done

    def _landed(self, row: _Row) -> SegmentDone:
        future, row.future = row.future, None
        assert future is not None
        try:
            result = future.result()
        except Exception as exc:  # this row's request failed: its request fails, nobody else's
            return SegmentDone(-1, [], error=exc)
        if row.rule is not None:
            [result] = cut_at_boundary([result], row.rule)
        tokens, hit_eos = list(result.tokens), result.hit_eos
        complete = None
        if row.sampling.grammar is not None:
            errors: dict[int, BaseException] = {}
            segments, eos = [tokens], [hit_eos]
            complete = self._check_constrained(row, 0, segments, eos, errors)
            if errors:
                return SegmentDone(-1, [], error=errors[0])
        row.prefix.extend(tokens)
        return SegmentDone(-1, tokens, hit_eos, complete=complete)

    def rollback(self, rows: Sequence[int], out: RoundOutput | None = None) -> None:
        for r in rows:
            row = self.rows[r]
            start = out.restore[r] if out is not None else row.start
            if start >= 0:
                del row.prefix[start:]

    def select_rows(self, source: Sequence[int]) -> None:
        seen: dict[int, int] = {}
        new_rows = []
        for s in source:
            old = self.rows[int(s)]
            copy = seen.get(int(s), 0)
            seen[int(s)] = copy + 1
            salt = old.salt if copy == 0 else segment_seed(old.salt, copy, 0, 0, 0)
            new = _Row(
                list(old.prefix),
                old.sampling,
                salt,
                old.affinity,
                opened_at=old.opened_at,
                at_length=old.at_length,
                attempt=old.attempt,
                start=old.start,
            )
            if copy == 0:  # a row mid-segment keeps its request in flight
                new.future, new.rule, new.ready = old.future, old.rule, old.ready
            new_rows.append(new)
        self.rows = new_rows

    def merge(self, other: Any) -> None:
        if not isinstance(other, RemoteBatch):
            raise TypeError(f"cannot merge {type(other).__name__} into a RemoteBatch")
        self.rows.extend(other.rows)
        other.free()

    def mergeable(self) -> bool:
        return True

    def compact(self) -> bool:
        return False  # nothing to squeeze: prefixes are plain lists

    def free(self) -> None:
        self.rows = []


def accepted_by(compiled: Any, tokens: Sequence[int]) -> tuple[int, bool]:
    """How many of `tokens` a fresh matcher of `compiled` accepts, and whether it is then complete."""
    import xgrammar

    matcher = xgrammar.GrammarMatcher(compiled)
    for i, token in enumerate(tokens):
        if matcher.is_terminated() or not matcher.accept_token(int(token)):
            return i, False
    return len(tokens), bool(matcher.is_completed() or matcher.is_terminated())


def _summary(errors: Sequence[BaseException], total: int, engine: str) -> ServingError:
    first = errors[0]
    reason = str(first) or type(first).__name__
    message = f"{len(errors)} of {total} segment requests to {engine} failed; first: {reason}"
    if isinstance(first, ServingError):
        summary = type(first)(message, url=first.url, status=first.status)
    else:
        summary = ServingError(message)
    summary.__cause__ = first
    return summary


def cut_at_boundary(results: Sequence[SegmentResult], boundary: BoundaryRule) -> list[SegmentResult]:
    """End each segment where `boundary` says, judging the distribution before every token.

    The engine generated up to the budget; the rule runs afterwards on stand-in logits built from
    the top-N logprobs of each position: the N known log-probabilities, plus the remaining mass
    spread evenly over as many tokens as needed for none to exceed the N-th probability (so the
    entropy of the stand-in is a lower bound of the true entropy, and equal to it when the top N
    hold all the mass). Tokens after the boundary are dropped. Rules that read only the
    distribution (CARDS' entropy rule does) see what they need; token positions are not kept.
    """
    if not results:
        return []
    steps = max(len(r.tokens) for r in results)
    cut = [len(r.tokens) for r in results]
    for s in range(steps):
        rows = [i for i, r in enumerate(results) if cut[i] > s]
        if not rows:
            break
        logits = _stand_in_logits([results[i].top_logprobs[s] for i in rows])  # type: ignore[index]
        ends = boundary(logits, torch.full((len(rows),), s, dtype=torch.long))
        for i, end in zip(rows, ends.tolist(), strict=True):
            if end:
                cut[i] = s
    out = []
    for result, keep in zip(results, cut, strict=True):
        if keep == len(result.tokens):
            out.append(result)
        else:
            out.append(SegmentResult(result.tokens[:keep], False, (result.top_logprobs or [])[:keep]))
    return out


def _stand_in_logits(tops: Sequence[dict[int, float]]) -> torch.Tensor:
    width = max(len(t) for t in tops)
    known = torch.full((len(tops), width), float("-inf"))
    fillers: list[tuple[int, float]] = []
    for i, top in enumerate(tops):
        values = torch.tensor(sorted(top.values(), reverse=True), dtype=torch.float64)
        known[i, : len(values)] = values.float()
        rest = float(1.0 - values.exp().sum())
        smallest = float(values[-1].exp()) if len(values) else 1.0
        count = math.ceil(rest / smallest) if rest > 1e-6 and smallest > 0 else 0
        fillers.append((min(count, _MAX_FILLERS), rest))
    extra = max(count for count, _ in fillers)
    tail = torch.full((len(tops), extra), float("-inf"))
    for i, (count, rest) in enumerate(fillers):
        if count:
            tail[i, :count] = math.log(rest / count)
    return torch.cat([known, tail], dim=1)


_MAX_FILLERS = 1 << 16
