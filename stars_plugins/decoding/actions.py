"""A required tool call is an action the reward judges whole (docs/tools.md, "Verified actions").

A call decoded under its constraint (`tool_choice` "required" with several bound tools) begins with
the function's name, and the name is the action. Two rules let a reward-guided judge (STARS, CARDS)
judge that action rather than a fragment of it, or only the one action a small policy proposes:

- **A name cut by the segment end is judged whole.** A candidate whose response stops inside the
  name (`{"name": "delete_`) is scored as the name the bound tools complete it to
  (`{"name": "delete_files"`) when there is exactly one; the tokens kept are the candidate's own.
- **The other actions are offered** (`offer_other_tools=True`). When no candidate of the call's
  first segment passes, the names of the bound tools that no candidate wrote are scored as
  candidates of their own (`{"name": "reply_to_user"`), after the policy's candidates in the
  acceptance order, once per segment. One that passes the threshold, or is the best seen when the rejections run out, is
  replayed token by token through the grammar. A policy that names the same tool whatever it is
  asked (SmolLM2-135M calls `delete_files` 48 times in 48 when told to delete) can then be steered
  to a safe action, and a policy that samples the right action keeps it whenever it passes.

Only for policies that mask tokens (the replay goes through the request's grammar) and calls not
named by `tool_choice` (a named call has nothing to choose). The second rule is off by default: it
makes the reward the judge of which tool answers the request, and the default "harmless" reward
judges harm, not relevance. On the project's 50 tool tasks it turned 7 destructive calls on 10
harmful requests into 4, but also the right function on the call tasks from 65 % to 42 % and the
right call on benign requests from 5 of 10 to 3 (docs/tools.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from stars_plugins.constraints import Validity, checker_for
from stars_plugins.decoding.state import Candidate, RequestState
from stars_plugins.prompts import PromptOptions

# The response up to an unfinished name: `{"name": "del` (Mistral's list: `[{"name": "del`).
_OPEN_NAME = re.compile(r'\s*\[?\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)')
_NAMED = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class CallStart:
    """How a request's required call begins: the names it may call and the JSON before a name."""

    names: tuple[str, ...]
    opening: str  # '{"name": ' or, in Mistral's list format, '[{"name": '

    def judged_text(self, response: str) -> str:
        """`response`, with a name it stops inside completed when only one bound tool fits."""
        match = _OPEN_NAME.fullmatch(response)
        if match is None:
            return response
        fits = [n for n in self.names if n.startswith(match.group(1))]
        return response + fits[0][len(match.group(1)) :] + '"' if len(fits) == 1 else response

    def alternatives(self, written: list[str]) -> list[str]:
        """Openings that name each bound tool no response in `written` names (complete or cut)."""
        named = set()
        for text in written:
            named.update(_NAMED.findall(self.judged_text(text)))
        return [self.opening + json.dumps(n) for n in self.names if n not in named]


def call_start(r: RequestState, policy: Any) -> CallStart | None:
    """The request's call start, when its response is a constrained choice among several tools."""
    if r.config.constraint is None or not getattr(policy, "supports_constraints", False):
        return None
    tools = PromptOptions.of(r.config).tools
    if not tools.must_call or tools.forced_name is not None or len(tools.tools) < 2:
        return None
    parser = tools.parser_for(getattr(getattr(policy, "tokenizer", None), "chat_template", None))
    opening = '[{"name": ' if parser.name == "mistral" else '{"name": '
    return CallStart(tuple(t.name for t in tools.tools), opening)


def alternative_candidates(r: RequestState, start: CallStart, written: list[str], policy: Any) -> list[Candidate]:
    """The other actions as candidates of the request's first segment: each bound tool's opening
    that no candidate named, tokenized, kept only where the request's grammar accepts it and its
    budget holds it."""
    checker = checker_for(policy, r.config.constraint)
    out = []
    for text in start.alternatives(written):
        ids = list(policy.token_ids(text))
        if not ids or len(ids) > r.remaining:
            continue
        if checker.check_tokens([*r.generated, *ids]) is Validity.INVALID:
            continue
        out.append(Candidate(token_ids=ids, text=r.text + text, finish=None, sampled=0))
    return out


__all__ = ["CallStart", "alternative_candidates", "call_start"]
