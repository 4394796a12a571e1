"""Proposals over LSP: for clients that opt in (`initializationOptions.proposals`), an edit action's result is sent
as `kimi/proposal` to review in the file, and lands only through `kimi.acceptProposal` (docs/protocol.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams

from kimi_lsp.core.edits import Edit
from kimi_lsp.core.proposals import Proposal, Proposals
from kimi_lsp.lsp.convert import range_at, range_json, text_edits
from kimi_lsp.lsp.feature import Feature, command_table

if TYPE_CHECKING:
    from kimi_lsp.core.pipeline import Job, Outcome
    from kimi_lsp.lsp.server import KimiLanguageServer
    from kimi_lsp.settings import Settings

# The feature is registered at start-up; what its commands need (validation, placement, the request path) loads
# with the first command (lsp/app.py's warm-up), so `initialize` does not wait for it.
log = logging.getLogger(__name__)
NOTIFICATION = "kimi/proposal"
HANDLERS, _handles = command_table()


class ProposalsFeature(Feature):
    """Owns the session's proposals; moves them with the user's typing and says when one goes stale."""

    def __init__(self, ls: KimiLanguageServer) -> None:
        super().__init__(ls)
        self.store = Proposals()

    def did_change(self, uri: str) -> None:
        if not self.store.of(uri) or (doc := self.ls.document(uri)) is None:
            return
        for p in self.store.changed(uri, doc.source):
            notify(self.ls, p)

    def did_close(self, uri: str) -> None:
        for p in self.store.closed(uri):
            notify(self.ls, p)


def wanted(ls: KimiLanguageServer, settings: Settings) -> bool:
    """Edits become proposals for clients that show them, unless the user asked for the editor's own preview
    (`previewEdits: always`) or for no review (`never`)."""
    return ls.proposals_ui and settings.preview_edits == "auto"


def to_json(ls: KimiLanguageServer, p: Proposal) -> dict[str, Any]:
    doc = ls.document(p.uri)
    out: dict[str, Any] = {
        "proposalId": p.id,
        "requestId": p.refining or p.outcome.request_id,  # while refining: the refinement's, to cancel it
        "uri": p.uri,
        "version": getattr(doc, "version", None),
        "action": p.job.action.key,
        "title": p.job.action.title,
        "output": p.job.action.output,
        "model": p.outcome.model,
        "state": p.state,
        "hunks": [],
        "range": None,
    }
    if p.message:
        out["message"] = p.message
    if doc is None or doc.source != p.text:  # closed, or not yet caught up: no positions to give
        return out
    edits = text_edits(doc, [Edit(h.start, h.end, h.new) for h in p.hunks])
    out["hunks"] = [
        {"id": h.id, "range": range_json(e.range), "oldText": h.old, "newText": h.new} for h, e in zip(p.hunks, edits)
    ]
    if p.selection is not None:
        out["range"] = range_json(range_at(doc, *p.selection))
    return out


def notify(ls: KimiLanguageServer, p: Proposal) -> None:
    ls.protocol.notify(NOTIFICATION, to_json(ls, p))


def propose(
    ls: KimiLanguageServer, job: Job, outcome: Outcome, uri: Optional[str], version: Optional[int]
) -> dict[str, Any]:
    """Holds an edit action's result as a proposal (or, for a refinement, as the proposal's new hunks) and tells the
    client; returns what the command result adds."""
    from kimi_lsp.core.outputs import place
    from kimi_lsp.lsp.features.results import current_job

    now, doc, _, why = current_job(ls, job, uri, version)
    if now is None or uri is None:
        return {"applied": False, "message": why}
    edits = place(now, outcome.new_code or "")
    if not edits:
        return {"applied": True, "message": "Kimi suggested no changes."}
    store = ProposalsFeature.of(ls).store
    refined = store.by_id.get(job.refines) if job.refines else None
    if refined is not None:
        store.refined(refined, outcome, edits, doc.source)
        refined.turns = list(job.follow_up)
        proposal = refined
    else:
        proposal, replaced = store.propose(uri, now, outcome, edits)
        for old in replaced:
            notify(ls, old)
    notify(ls, proposal)
    return {"applied": False, "proposed": True, "proposalId": proposal.id}


def gone(ls: KimiLanguageServer, pid: str) -> dict[str, Any]:
    """A proposal that has ended: a click on a lens that was just replaced, or a client's stale id."""
    message = f"Kimi: proposal {pid} is no longer open (it was accepted, rejected or replaced); nothing was changed."
    _say(ls, lsp.MessageType.Warning, message)
    return {"applied": False, "hunks": [], "remaining": [], "message": message}


def _say(ls: KimiLanguageServer, kind: lsp.MessageType, text: str) -> None:
    ls.window_show_message(lsp.ShowMessageParams(type=kind, message=text))


@_handles("kimi.acceptProposal")
async def accept(ls, *args: Any) -> dict:
    from kimi_lsp.lsp.args import ProposalArg, parse_args
    from kimi_lsp.lsp.features.results import request_edit, versioned_edit

    a = parse_args(ProposalArg, args)
    store = ProposalsFeature.of(ls).store
    if (p := store.by_id.get(a.proposalId)) is None:
        return gone(ls, a.proposalId)
    doc = ls.document(p.uri)
    hunks, why = store.pick(p, a.hunks)
    if why is None and doc is None:
        why = "the document is not open"
    if why is None and doc is not None:
        if doc.source != p.text:
            for stale in store.changed(p.uri, doc.source):
                notify(ls, stale)
        why = store.check(p, hunks, doc.source)
    if why is not None or doc is None:
        message = f"{p.job.action.title}: {why}."
        _say(ls, lsp.MessageType.Warning, message)
        return {"applied": False, "hunks": [], "remaining": [h.id for h in p.hunks], "message": message}
    edits = store.begin_accept(p, hunks)
    res, failed = await request_edit(ls, versioned_edit(p.uri, doc.version, text_edits(doc, edits)), p.job.action.title)
    applied = bool(res is not None and res.applied)
    message = ""
    if res is None:
        message = f"{failed}; nothing was changed"
    elif not applied:
        message = f"the editor declined the edit ({res.failure_reason or 'no reason given'}); nothing was changed"
    now = ls.document(p.uri)
    store.end_accept(p, applied, now.source if now is not None else None)
    notify(ls, p)
    if not applied:
        _say(ls, lsp.MessageType.Warning, f"{p.job.action.title}: {message}.")
    out = {"applied": applied, "hunks": [h.id for h in hunks] if applied else [], "remaining": [h.id for h in p.hunks]}
    return {**out, "message": message} if message else out


@_handles("kimi.rejectProposal")
async def reject(ls, *args: Any) -> dict:
    from kimi_lsp.lsp.args import ProposalArg, parse_args

    a = parse_args(ProposalArg, args)
    store = ProposalsFeature.of(ls).store
    if (p := store.by_id.get(a.proposalId)) is None:
        return {**gone(ls, a.proposalId), "rejected": []}
    _, why = store.pick(p, a.hunks)
    if why is not None:
        raise JsonRpcInvalidParams(why)
    dropped = store.drop(p, a.hunks)
    notify(ls, p)
    return {"rejected": dropped, "remaining": [h.id for h in p.hunks]}


@_handles("kimi.listProposals")
async def list_proposals(ls, *args: Any) -> dict:
    from kimi_lsp.lsp.args import ExplanationArg, parse_args

    a = parse_args(ExplanationArg, args)  # {uri?}
    return {"proposals": [to_json(ls, p) for p in ProposalsFeature.of(ls).store.of(a.uri)]}


def follow_up(p: Proposal, instruction: str) -> list[dict[str, Any]]:
    """The assistant's last answer, replayed whole (reasoning included, as thinking models require), and the
    user's refinement."""
    from kimi_lsp.core.threads import replay
    from kimi_lsp.kimi.rules import thinks

    answer = {"role": "assistant", "content": p.outcome.text or "(no answer)", "reasoning_content": p.outcome.reasoning}
    [turn] = replay([answer], thinks(p.job.model, p.job.settings))  # as conversations replay answers
    ask = (
        f"Instruction: {instruction}\n\nRevise your code above accordingly. Reply with ONLY the code that replaces "
        "the selected code, in one fenced code block: no explanation before or after it."
        if p.job.action.output == "replace"
        else f"Instruction: {instruction}\n\nRevise your answer above accordingly, in the same form as before."
    )
    return [turn, {"role": "user", "content": f"Task: {p.job.action.id}\n{ask}"}]
