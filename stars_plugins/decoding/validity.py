"""The schema-validity judge: structured output for policies that cannot mask tokens while
sampling (a serving engine without structured-output parameters for a continuation).

`ConstraintFilter(inner)` wraps any judge. Before the inner judge sees a round's candidates, every
candidate of a constrained request is checked against its constraint (an xgrammar matcher fed the
request's accepted tokens plus the candidate's): a candidate whose output can no longer be
completed to a valid one, or that ends (EOS) before the output is complete, is rejected at this
segment boundary and never reaches the reward. A candidate that runs out of budget while still
incomplete ends as `constraint_incomplete`. When no candidate of a round survives, the segment is
resampled; after `max_rejections` such rounds in a row the request fails with a `ConstraintError`
(the policy does not follow the constraint, and masking is not available to force it).
"""

from __future__ import annotations

from collections.abc import Sequence

from stars_plugins.constraints import Constraint, ConstraintChecker, Validity, checker_for, compiler_for
from stars_plugins.decoding.judges import Decision, Items, Judge
from stars_plugins.decoding.scoring import DecodeContext
from stars_plugins.decoding.state import Candidate, RequestState
from stars_plugins.errors import ConstraintError


def candidate_validity(checker: ConstraintChecker, prefix: Sequence[int], candidate: Candidate) -> Validity:
    """INVALID when `prefix + candidate` cannot become valid, or ends (EOS, stop string) incomplete."""
    validity = checker.check_tokens([*prefix, *candidate.token_ids])
    if candidate.finish in ("eos", "stop") and validity is not Validity.COMPLETE:
        return Validity.INVALID
    return validity


class ConstraintFilter:
    """A judge that drops candidates violating their request's constraint, then asks `inner`."""

    def __init__(self, inner: Judge):
        self.inner = inner
        self.settings = inner.settings
        self.rejects = True
        self._invalid_rounds: dict[int, int] = {}  # request key -> rounds in a row with no valid candidate
        self._checkers: dict[tuple[int, Constraint], ConstraintChecker] = {}

    def start(self, ctx: DecodeContext, requests: Sequence[RequestState]) -> None:
        self.inner.start(ctx, requests)

    def forced_tokens(self, request: RequestState) -> list[int] | None:
        return self.inner.forced_tokens(request)

    def rejected_rounds(self, request: RequestState) -> int:
        return max(self.inner.rejected_rounds(request), self._invalid_rounds.get(request.key, 0))

    def decide(self, ctx: DecodeContext, items: Items) -> list[Decision]:
        kept: list[tuple[RequestState, list[Candidate]]] = []
        emptied: set[int] = set()
        for r, candidates in items:
            constraint = r.config.constraint
            if constraint is None or not candidates or r.done:
                kept.append((r, candidates))
                continue
            checker = self._checker(ctx, constraint)
            valid = []
            for c in candidates:
                validity = candidate_validity(checker, r.generated, c)
                if validity is Validity.INVALID:
                    r.stats.rejections += 1
                    r.stats.rejected_tokens += c.sampled
                    continue
                if c.finish == "length" and validity is Validity.PARTIAL:
                    c.finish = "constraint_incomplete"
                valid.append(c)
            if not valid:
                emptied.add(id(r))
            kept.append((r, valid))
        asked = [(r, cs) for r, cs in kept if id(r) not in emptied]
        answers = iter(self.inner.decide(ctx, asked)) if asked else iter(())
        decisions = []
        for r, _ in kept:
            if id(r) in emptied:
                decisions.append(self._no_valid_candidate(r))
            else:
                self._invalid_rounds.pop(r.key, None)
                decisions.append(next(answers))
        return decisions

    def _no_valid_candidate(self, r: RequestState) -> Decision:
        rounds = self._invalid_rounds[r.key] = self._invalid_rounds.get(r.key, 0) + 1
        if rounds > max(r.config.max_rejections, 1):
            self._invalid_rounds.pop(r.key, None)
            r.finish(
                "error",
                ConstraintError(
                    f"no candidate of segment {len(r.segments)} fitted the constraint "
                    f"({r.config.constraint.describe()}) in {rounds} rounds; "
                    "this policy backend cannot mask tokens, and the model does not follow it"
                ),
            )
        return Decision()

    def _checker(self, ctx: DecodeContext, constraint: Constraint) -> ConstraintChecker:
        key = (id(ctx.policy), constraint)
        checker = self._checkers.get(key)
        if checker is None:
            checker = self._checkers[key] = checker_for(ctx.policy, constraint)
        return checker


__all__ = ["ConstraintFilter", "candidate_validity", "checker_for", "compiler_for"]
