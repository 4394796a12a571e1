"""Proposals: an edit action's result held for review (accept, reject, refine) instead of applied at once.

Pure bookkeeping in code-point offsets into the document's text. A proposal's hunks and its request's selection
follow the user's typing around them (core.edits.shift); typing inside a hunk makes the proposal stale, since the
code it would replace is no longer the code the model saw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from kimi_lsp.core.edits import Edit, apply_edits, changed_span, shift

if TYPE_CHECKING:
    from kimi_lsp.core.pipeline import Job, Outcome

LIVE = ("ready", "refining")
ENDED = ("accepted", "rejected", "replaced")


@dataclass
class Hunk:
    id: str
    start: int
    end: int
    old: str
    new: str


@dataclass
class Proposal:
    id: str
    uri: str
    job: Job  # the request as first sent; its text and offsets are not kept current (see `selection`)
    outcome: Outcome  # the answer the hunks come from (the latest refinement's)
    hunks: list[Hunk]
    text: str  # the document text the offsets below refer to
    selection: Optional[tuple[int, int]]  # where the request's selection is now; None once the user edited inside
    state: str = "ready"
    message: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)  # follow-up messages so far (assistant, user, ...)
    pending: Optional[tuple[list[str], str]] = None  # an accept on its way: (hunk ids, the text it will produce)
    refining: Optional[str] = None  # the request id of a refinement under way
    issued: int = 0  # hunk ids given out so far (h1, h2, ...)

    @property
    def live(self) -> bool:
        return self.state in LIVE


class Proposals:
    """Every proposal of the session, by id; at most one live proposal per overlapping range of a document."""

    def __init__(self) -> None:
        self.by_id: dict[str, Proposal] = {}
        self._ids = itertools.count(1)

    def of(self, uri: Optional[str] = None) -> list[Proposal]:
        return [p for p in self.by_id.values() if uri is None or p.uri == uri]

    def propose(self, uri: str, job: Job, outcome: Outcome, edits: list[Edit]) -> tuple[Proposal, list[Proposal]]:
        """A new proposal for `edits` on `job.text`, and the live proposals on overlapping ranges it replaces."""
        replaced = [
            p
            for p in self.of(uri)
            if p.selection is not None and _overlap(p.selection, (job.start, job.end)) and p.state != "refining"
        ]
        for p in replaced:
            self.end(p, "replaced", "a new Kimi action on the same code replaced it")
        pid = f"p{next(self._ids)}"
        proposal = Proposal(pid, uri, job, outcome, _hunks(job.text, edits), job.text, (job.start, job.end))
        proposal.issued = len(proposal.hunks)
        self.by_id[pid] = proposal
        return proposal, replaced

    def end(self, proposal: Proposal, state: str, message: str = "") -> None:
        proposal.state, proposal.message = state, message
        self.by_id.pop(proposal.id, None)

    def changed(self, uri: str, text: str) -> list[Proposal]:
        """The document is now `text`: move every proposal on it; returns those that went stale now."""
        stale = []
        for p in self.of(uri):
            if p.text is text or p.text == text:
                continue
            if p.pending is not None:
                if p.pending[1] == text:
                    self._finish_accept(p, p.pending[0])
                # Else the editor may be reporting a half-applied accept (Neovim applies hunk by hunk): judged
                # when the accept answers (end_accept), against the text it was meant to produce.
                continue
            span = changed_span(p.text, text)
            p.text = text
            if p.selection is not None:
                p.selection = shift(span, *p.selection)
            moved = [shift(span, h.start, h.end) for h in p.hunks]
            if p.state == "stale":
                continue
            if any(m is None for m in moved):
                p.state, p.message = "stale", "the code it would change was edited, so it can no longer be applied"
                stale.append(p)
                continue
            for h, m in zip(p.hunks, moved):
                assert m is not None
                h.start, h.end = m
        return stale

    def closed(self, uri: str) -> list[Proposal]:
        went = self.of(uri)
        for p in went:
            self.end(p, "stale", "the document was closed")
        return went

    def pick(self, proposal: Proposal, ids: Optional[list[str]]) -> tuple[list[Hunk], Optional[str]]:
        """The hunks `ids` names (all when None), or why they cannot be taken."""
        if ids is None:
            return list(proposal.hunks), None
        known = {h.id: h for h in proposal.hunks}
        missing = [i for i in ids if i not in known]
        if missing:
            return [], f"no hunk {', '.join(missing)} in proposal {proposal.id}"
        return [known[i] for i in dict.fromkeys(ids)], None

    def check(self, proposal: Proposal, hunks: list[Hunk], text: str) -> Optional[str]:
        """Why `hunks` cannot be applied to the document's current `text`, or None."""
        if proposal.state == "stale":
            return f"the proposal is stale: {proposal.message}; nothing was changed"
        if proposal.state != "ready":
            return f"the proposal is {proposal.state}; nothing was changed"
        changed = [h.id for h in hunks if text[h.start : h.end] != h.old]
        if changed:
            return f"the code of {', '.join(changed)} changed since it was proposed; nothing was changed"
        return None

    def begin_accept(self, proposal: Proposal, hunks: list[Hunk]) -> list[Edit]:
        """The edits that accept `hunks`; the document change they cause is recognised when it arrives."""
        edits = [Edit(h.start, h.end, h.new) for h in hunks]
        proposal.pending = ([h.id for h in hunks], apply_edits(proposal.text, edits))
        return edits

    def end_accept(self, proposal: Proposal, applied: bool, text: Optional[str]) -> None:
        """After the editor answered: the accept landed (`text` is the document now) or not."""
        pending, proposal.pending = proposal.pending, None
        if not applied or pending is None:
            return
        ids, expected = pending
        self._finish_accept(proposal, ids, expected)
        if text is not None and text != expected:  # other typing came with it: the rest move with that change
            self.changed(proposal.uri, text)

    def _finish_accept(self, p: Proposal, ids: list[str], expected: Optional[str] = None) -> None:
        accepted = [h for h in p.hunks if h.id in ids]
        rest = [h for h in p.hunks if h.id not in ids]
        text = (
            expected if expected is not None else apply_edits(p.text, [Edit(h.start, h.end, h.new) for h in accepted])
        )
        for a in sorted(accepted, key=lambda h: h.start, reverse=True):
            span = (a.start, a.end, a.start + len(a.new))
            for h in rest:
                moved = shift(span, h.start, h.end)
                if moved is not None:  # hunks never overlap, so the others only move
                    h.start, h.end = moved
            if p.selection is not None:
                p.selection = _grow(p.selection, span)
        p.hunks, p.pending, p.text = rest, None, text
        if not rest:
            self.end(p, "accepted")

    def drop(self, proposal: Proposal, ids: Optional[list[str]]) -> list[str]:
        """Rejects the hunks `ids` (all when None); the proposal ends when none is left."""
        dropped = [h.id for h in proposal.hunks if ids is None or h.id in ids]
        proposal.hunks = [h for h in proposal.hunks if h.id not in dropped]
        if not proposal.hunks:
            self.end(proposal, "rejected")
        return dropped

    def refined(self, proposal: Proposal, outcome: Outcome, edits: list[Edit], text: str) -> None:
        """A refinement answered: its hunks replace the old ones (computed on the document's current `text`)."""
        proposal.outcome, proposal.text = outcome, text
        # Hunk ids are never reused within a proposal, so a client's stale id cannot name a new hunk.
        proposal.hunks = _hunks(text, edits, start=proposal.issued + 1)
        proposal.issued += len(proposal.hunks)
        proposal.state, proposal.message = "ready", ""


def _hunks(text: str, edits: list[Edit], start: int = 1) -> list[Hunk]:
    return [Hunk(f"h{i}", s, e, text[s:e], new) for i, (s, e, new) in enumerate(sorted(edits), start)]


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return (a[0] < b[1] and b[0] < a[1]) or a == b


def _grow(selection: tuple[int, int], span: tuple[int, int, int]) -> tuple[int, int]:
    """The selection after an accepted hunk replaced span[0]:span[1] by text ending at span[2]: moved when the hunk
    lies before it (an insertion at its start included), longer or shorter when inside it."""
    start, end = selection
    delta = span[2] - span[1]
    if span[1] <= start:
        return start + delta, end + delta
    if span[0] >= end:
        return start, end
    return start, end + delta
