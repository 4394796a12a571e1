"""Applying a result to the document: the smallest edits, placed where the selected code is now, versioned,
and previewed where the editor can."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp

from kimi_lsp.core.edits import Edit, apply_edits, rebase
from kimi_lsp.core.lines import line_end, line_start
from kimi_lsp.core.outputs import place
from kimi_lsp.core.pipeline import Job, Outcome
from kimi_lsp.lsp.convert import position_at, text_edits
from kimi_lsp.lsp.features.explanations import ExplanationsFeature
from kimi_lsp.lsp.features.explanations import refresh as refresh_lenses
from kimi_lsp.lsp.features.reporting import show_answer
from kimi_lsp.lsp.protocol import EDIT_TIMEOUT, ClientRequestError

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

log = logging.getLogger(__name__)


def plan_edits(doc: Any, job: Job, outcome: Outcome) -> list[lsp.TextEdit]:
    """The result's edits (core.outputs.place), as positions in the client's encoding."""
    return text_edits(doc, place(job, outcome.new_code or ""))


def current_job(
    ls: KimiLanguageServer, job: Job, uri: Optional[str], version: Optional[int]
) -> tuple[Optional[Job], Any, Optional[int], str]:
    """The job as it stands on the document now (the selection moved by typing around it), its document and
    version; or None and why the result can no longer be placed."""
    doc = ls.document(uri) if uri else None
    if uri is None or doc is None:
        return None, None, None, "the document was closed, so nothing was changed."
    if job.generation is not None and getattr(doc, "generation", None) != job.generation:
        # Closed and opened again: versions start again at 1, so the version check below cannot tell.
        return (
            None,
            doc,
            None,
            ("the file was closed and reopened while Kimi worked, so the edit was not applied. Run it again."),
        )
    if doc.version != version:
        # The user kept typing: if the selected code itself is untouched, place the edit where it is now.
        moved = rebase(job.text, doc.source, job.start, job.end)
        if moved is None:
            return (
                None,
                doc,
                None,
                ("the code you selected changed while Kimi was working, so the edit was not applied. Run it again."),
            )
        job = dataclasses.replace(job, text=doc.source, start=moved[0], end=moved[1])
    return job, doc, doc.version, ""


async def apply_outcome(
    ls: KimiLanguageServer,
    job: Job,
    outcome: Outcome,
    uri: Optional[str],
    rng: Optional[lsp.Range],
    version: Optional[int],
) -> tuple[bool, str]:
    if rng is None:
        return False, "the document was closed, so nothing was changed."
    now, doc, version, why = current_job(ls, job, uri, version)
    if now is None or uri is None:
        return False, why
    job = now
    placed = place(job, outcome.new_code or "")
    edits: Sequence[lsp.TextEdit] = text_edits(doc, placed)
    if not edits:
        return True, "Kimi suggested no changes."
    if not ls.capability("workspace.apply_edit"):
        return False, await _show_instead(ls, job, outcome, doc, uri, placed)
    settings = job.settings
    supports_doc_changes = bool(ls.capability("workspace.workspace_edit.document_changes"))
    annotate = (
        settings.preview_edits != "never"
        and supports_doc_changes
        and bool(ls.capability("workspace.workspace_edit.change_annotation_support"))
    )
    sent: Sequence[lsp.TextEdit | lsp.AnnotatedTextEdit] = edits
    if annotate:
        sent = [lsp.AnnotatedTextEdit(range=e.range, new_text=e.new_text, annotation_id="kimi") for e in edits]
        annotations = {
            "kimi": lsp.ChangeAnnotation(
                label=job.action.title, needs_confirmation=True, description=f"Suggested by {outcome.model}"
            )
        }
    else:
        annotations = None
        if settings.preview_edits == "always" and not await _confirm(ls, job.action.title, len(edits)):
            return False, "discarded."
    edit = (
        versioned_edit(uri, version, sent, annotations)
        if supports_doc_changes
        else lsp.WorkspaceEdit(changes={uri: edits})
    )
    res, failed = await request_edit(ls, edit, job.action.title)
    if res is None:
        return False, f"{failed}."
    if not res.applied:
        reason = res.failure_reason or ""
        current = ls.document(uri)
        if "version" in reason.lower() or (current is not None and current.version != version):
            return False, "the file changed before the edit could land, so nothing was changed; run it again."
        return False, f"the edit was declined{f' ({reason})' if reason else ''}, so nothing was changed."
    return True, ""


def versioned_edit(
    uri: str,
    version: Optional[int],
    edits: Sequence[lsp.TextEdit | lsp.AnnotatedTextEdit],
    annotations: Optional[dict[str, lsp.ChangeAnnotation]] = None,
) -> lsp.WorkspaceEdit:
    """One versioned TextDocumentEdit: the editor applies it only to the version it was made for (one undo step)."""
    return lsp.WorkspaceEdit(
        document_changes=[
            lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version), edits=list(edits)
            )
        ],
        change_annotations=annotations,
    )


async def request_edit(
    ls: KimiLanguageServer, edit: lsp.WorkspaceEdit, label: str
) -> tuple[Optional[lsp.ApplyWorkspaceEditResult], str]:
    """Asks the editor to apply `edit`: its answer, or None and why the request itself failed."""
    try:
        res = await ls.ask_client(
            lsp.WORKSPACE_APPLY_EDIT,
            lsp.ApplyWorkspaceEditParams(edit=edit, label=label),
            EDIT_TIMEOUT,
            expect=lsp.ApplyWorkspaceEditResult,
        )
    except ClientRequestError as exc:
        log.warning("applyEdit failed: %s", exc)
        return None, str(exc)
    return res, ""


async def _show_instead(
    ls: KimiLanguageServer, job: Job, outcome: Outcome, doc: Any, uri: str, placed: list[Edit]
) -> str:
    """The editor takes no edits from the server (workspace.applyEdit absent or false): show the suggested code,
    and keep it on the range (hover, code lens) so it can be read again and copied."""
    text = doc.source
    start = line_start(text, min(s for s, _, _ in placed))
    end = line_end(text, max(e for _, e, _ in placed))
    first, last = position_at(doc, start).line, position_at(doc, max(start, end - 1)).line
    rebased = [Edit(s - start, e - start, new) for s, e, new in placed]
    new_text = apply_edits(text[start:end], rebased).rstrip("\r\n")
    code = f"Suggested change for lines {first + 1}-{last + 1}:\n\n```{job.language}\n{new_text}\n```"
    att = ExplanationsFeature.of(ls).store.attach(
        uri, text, job.start, job.end, outcome.model, f"{job.action.title} (suggested)", action=job.action.key
    )
    att.text, att.done = code, True
    refresh_lenses(ls)
    await show_answer(ls, job.request_id, f"{job.action.title} ({outcome.model})", code, force=True)
    return (
        "your editor does not accept edits from the server (workspace.applyEdit), so the suggested code is "
        "shown instead; hover over the code to read it again."
    )


async def _confirm(ls: KimiLanguageServer, title: str, n: int) -> bool:
    # showMessageRequest is part of every client (window.showMessage only describes extras): always ask.
    try:
        choice = await ls.ask_client(
            lsp.WINDOW_SHOW_MESSAGE_REQUEST,
            lsp.ShowMessageRequestParams(
                type=lsp.MessageType.Info,
                message=f"{title}: apply {n} change(s)?",
                actions=[lsp.MessageActionItem(title="Apply"), lsp.MessageActionItem(title="Discard")],
            ),
            EDIT_TIMEOUT,
            expect=(lsp.MessageActionItem, type(None)),
        )
    except ClientRequestError:
        return False
    return bool(choice and choice.title == "Apply")
