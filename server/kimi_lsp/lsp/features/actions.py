"""The action commands (`kimi.explain` … `kimi.runAction`, `kimi.cancel`). Thin: parse the arguments, take a
selection snapshot, let core prepare and run the Job, then apply or show the result."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams

from kimi_lsp import errors
from kimi_lsp.core.actions import BUILTIN_ACTIONS, NEXT_EDIT, ActionSpec, custom_action
from kimi_lsp.core.outputs import place
from kimi_lsp.core.pipeline import Job, run_job
from kimi_lsp.core.prompts import fits_whole
from kimi_lsp.core.references import as_prompt
from kimi_lsp.core.request import Snapshot, new_request_id, prepare, toolbox
from kimi_lsp.core.tools import Sandbox, ToolBox
from kimi_lsp.kimi.pricing import describe
from kimi_lsp.lsp.args import ActionArgs, CancelArg, Diag, NextEditArg, Range, RefineArg, parse_args
from kimi_lsp.lsp.convert import clamp, fs_path, line_span, offset_at, range_at, range_json
from kimi_lsp.lsp.feature import command_table
from kimi_lsp.lsp.features import completion, diagnostics, proposals
from kimi_lsp.lsp.features.explanations import ExplanationsFeature
from kimi_lsp.lsp.features.explanations import refresh as refresh_lenses
from kimi_lsp.lsp.features.proposals import ProposalsFeature
from kimi_lsp.lsp.features.reporting import LspSink, show_answer
from kimi_lsp.lsp.features.results import apply_outcome
from kimi_lsp.lsp.features.threads import ThreadsFeature

if TYPE_CHECKING:
    from kimi_lsp.core.references import Reference
    from kimi_lsp.kimi.models import ModelInfo
    from kimi_lsp.lsp.server import KimiLanguageServer
    from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)


def _language(doc: Any) -> str:
    return getattr(doc, "language_id", None) or ""


def selection_of(doc: Any, r: Range) -> tuple[lsp.Range, int, int]:
    """The editor's range, clamped to the document and in order, and its offsets into `doc.source`; every edit is
    built from this range, never from the raw one."""
    s, e = clamp(doc, r.start), clamp(doc, r.end)
    if (e.line, e.character) < (s.line, s.character):
        s, e = e, s
    return lsp.Range(start=s, end=e), doc.offset_at_position(s), doc.offset_at_position(e)


def _describe(d: Diag) -> str:
    """A diagnostic as the prompt lists it: `line 5: message (source)`."""
    where = f"line {d.line + 1}: " if d.line is not None else ""
    return where + d.message + (f" ({d.source})" if d.source else "")


def _message(ls: KimiLanguageServer, kind: lsp.MessageType, text: str) -> None:
    ls.window_show_message(lsp.ShowMessageParams(type=kind, message=text))


def _result(spec: ActionSpec, request_id: str, **more: Any) -> dict[str, Any]:
    """An action's result: it names the action and its output kind, so clients decide what to show by the kind."""
    return {"requestId": request_id, "action": spec.key, "output": spec.output, **more}


def _fail(spec: ActionSpec, request_id: str, exc: errors.KimiError) -> dict[str, Any]:
    return _result(spec, request_id, applied=False, error={"code": exc.code, "message": str(exc)})


async def run_action(ls: KimiLanguageServer, spec: ActionSpec, a: ActionArgs) -> dict:
    request_id = new_request_id()
    doc = ls.document(a.uri) if a.uri else None
    if a.uri and doc is None:
        exc = errors.Refused(f"{spec.title}: the document {a.uri} is not open in the editor.")
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(spec, request_id, exc)
    if a.threadId and not spec.edits:
        return await follow_up(ls, spec, a, request_id)
    if spec.needs_document and (doc is None or a.range is None):
        raise JsonRpcInvalidParams(f"{spec.command} needs a uri and a range")

    settings = await ls.config.for_request(a.uri)
    model = ls.model_for(settings)
    text, start, end, rng, version = "", 0, 0, None, None
    if doc is not None and a.range is not None:
        rng, start, end = selection_of(doc, a.range)
        text, version = doc.source, doc.version
    if spec.image and start == end and doc is not None and rng is not None:
        rng, start, end = _line_of(doc, rng.start.line)  # the line under the cursor
    if spec.needs_selection and start == end:
        exc = errors.Refused(f"{spec.title}: select the code to change first.")
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(spec, request_id, exc)

    snap = Snapshot(
        text=text,
        start=start,
        end=end,
        language=_language(doc) if doc else "",
        path=ls.display_path(a.uri),
        folder=Path(p).parent if (p := fs_path(a.uri)) else None,
        instruction=a.instruction or a.prompt,
        diagnostics=[_describe(d) for d in a.diagnostics],
        images=a.images,
        width=a.width or 100,
        generation=getattr(doc, "generation", None),
    )
    if a.uri and doc is not None and fits_whole(text, settings.file_context_tokens):
        # the file as earlier prompts sent it, so their cached prefix is reused (only files sent whole)
        snap.base_text, snap.changes = ls.context_bases.pick(a.uri, text)
    sandbox = ls.sandbox(settings)
    question = snap.instruction
    refs = await _references(ls, question, sandbox, snap.text[start:end], snap.diagnostics, model) if question else []
    if refs:
        snap.instruction = f"{question}\n\n{as_prompt(refs)}"
    try:
        job = await prepare(spec, snap, settings, model, sandbox, ls.known_models(settings), request_id)
    except errors.KimiError as exc:
        _message(ls, lsp.MessageType.Warning, f"Kimi: {exc}")
        return _fail(spec, request_id, exc)
    job.question, job.references = question, [_label(r) for r in refs]
    return await launch(ls, job, a.uri, rng, version, sandbox, tag=a.tag)


async def _references(
    ls: KimiLanguageServer, question: str, sandbox: Sandbox, selection: str, diags: list[str], model: ModelInfo
) -> list[Reference]:
    """The question's #references, read through the sandbox, within a quarter of the model's window."""
    from kimi_lsp.core.references import resolve

    return await resolve(question, sandbox, selection=selection, diagnostics=diags, budget=model.context_length // 4)


def _label(ref: Reference) -> str:
    return ref.label if ref.ok else f"{ref.label} (refused)"


async def follow_up(ls: KimiLanguageServer, spec: ActionSpec, a: ActionArgs, request_id: str) -> dict:
    """A follow-up question in a conversation: the thread's messages as they were sent (reasoning replayed as the
    model requires), the oldest follow-ups left out when they no longer fit, then the new question."""
    from kimi_lsp.core.threads import fit_history, replay
    from kimi_lsp.kimi.rules import notices, thinks

    thread = await ThreadsFeature.of(ls).get(a.threadId or "")
    if thread is None:
        exc = errors.Refused(
            f"{spec.title}: no conversation {a.threadId} in this workspace (it may have been deleted)."
        )
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(spec, request_id, exc)
    question = (a.prompt or a.instruction).strip()
    if not question:
        exc = errors.Refused(f"{spec.title}: type a follow-up question first.")
        return _fail(spec, request_id, exc)
    doc = ls.document(a.uri) if a.uri else None
    settings = await ls.config.for_request(a.uri or thread.uri)
    model = ls.model_for(settings)
    sandbox = ls.sandbox(settings)
    selection, rng, version = "", None, None
    if doc is not None and a.range is not None:
        rng, start, end = selection_of(doc, a.range)
        selection, version = doc.source[start:end], doc.version
    refs = await _references(ls, question, sandbox, selection, [_describe(d) for d in a.diagnostics], model)
    user = f"Question: {question}" + (f"\n\n{as_prompt(refs)}" if refs else "")
    budget = int((model.context_length - (settings.max_tokens or model.default_max_tokens)) * 0.8)
    history, dropped = fit_history(
        [*replay(thread.messages, thinks(model, settings)), {"role": "user", "content": user}], budget
    )
    spec = BUILTIN_ACTIONS["ask"]
    job = Job(spec, "", 0, 0, settings, model, request_id, language=thread.language, notices=notices(model, settings))
    job.history, job.follow_up, job.thread_id = history[:-1], history[-1:], thread.id
    job.question, job.references = question, [_label(r) for r in refs]
    if dropped:
        job.note = (
            f"{dropped} earlier follow-up{'s were' if dropped != 1 else ' was'} left out to fit {model.id}'s window."
        )
    return await launch(ls, job, a.uri, rng, version, sandbox, tag=a.tag)


async def launch(
    ls: KimiLanguageServer,
    job: Job,
    uri: Optional[str],
    rng: Optional[lsp.Range],
    version: Optional[int],
    sandbox: Optional[Sandbox] = None,
    tag: Optional[str] = None,
) -> dict:
    """Runs a prepared job as a server job (progress, kimi/stream, cancellable) and answers as the client wants:
    the final result, or at once with {requestId, started} (kimi.commandResult)."""
    settings, spec, model = job.settings, job.action, job.model
    sandbox = sandbox or ls.sandbox(settings)
    tools, notice = toolbox(settings, model, sandbox, diagnostics.Diagnostics.of(ls).seen)
    for said in [*job.notices, *([notice] if notice is not None else [])]:
        ls.notice_once(*said)
    key = (uri, (job.start, job.end), spec.command, spec.key, job.refines)
    log.info(
        "%s %s: model %s at %s (settings from %s)",
        job.request_id,
        spec.id,
        model.id,
        settings.effective_base_url,
        ls.config.source or "defaults",
    )
    _no_settings_notice(ls, settings)
    task = ls.jobs.start(job.request_id, key, _execute(ls, job, uri, rng, version, tools, tag))
    if _immediate(ls, settings):
        # eglot waits for executeCommand synchronously (10 s) and freezes Emacs meanwhile: answer now; the job
        # delivers through progress, applyEdit and messages, and kimi.cancel or the progress cancel stop it.
        return _result(spec, job.request_id, started=True)
    _link_request_cancel(ls, task)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and not (current is not None and current.cancelling()):
            return _result(spec, job.request_id, applied=False, cancelled=True)
        raise


def _immediate(ls: KimiLanguageServer, settings: Settings) -> bool:
    return settings.command_result == "immediate" or (settings.command_result == "auto" and not ls.stream_ui)


def _no_settings_notice(ls: KimiLanguageServer, settings: Settings) -> None:
    """Said once: no settings arrived (no workspace/configuration, no push, no initializationOptions)."""
    if ls.config.source is not None:
        return
    text = (
        f"Kimi: no settings came from the editor, so the defaults are in use (model {settings.model}, "
        f"{settings.effective_base_url}). This editor neither answers workspace/configuration nor sends "
        "settings: pass the kimi section as initializationOptions (Neovim before 0.11: init_options = { kimi = "
        "{ ... } }) or with workspace/didChangeConfiguration. See docs/editors.md."
    )
    if ls.notice_once("no-settings", text, lsp.MessageType.Warning):
        log.warning(
            "no settings from the editor; defaults in use (%s, %s)", settings.model, settings.effective_base_url
        )


def _link_request_cancel(ls: KimiLanguageServer, task: asyncio.Task) -> None:
    """`$/cancelRequest` cancels pygls' result future for this request; make it stop the job too."""
    fut = ls.protocol.current_request_future()
    if fut is not None:
        fut.add_done_callback(lambda f: f.cancelled() and task.cancel())


def _line_of(doc: Any, line: int) -> tuple[lsp.Range, int, int]:
    lines = doc.lines
    line = min(line, max(0, len(lines) - 1))
    start = doc.offset_at_position(lsp.Position(line=line, character=0))
    end = start + len(lines[line]) if lines else 0
    return range_at(doc, start, end), start, end


async def _execute(
    ls: KimiLanguageServer,
    job: Job,
    uri: Optional[str],
    rng: Optional[lsp.Range],
    version: Optional[int],
    tools: Optional[ToolBox] = None,
    tag: Optional[str] = None,
) -> dict:
    spec, settings = job.action, job.settings
    sink = LspSink(ls, job.request_id, spec.title, job.model.id)
    client = await ls.kimi(settings)
    att = None
    if spec.attach and uri and rng is not None and job.start < job.end:
        # The answer stays attached to its range (hover, code lens), filling in while it streams.
        att = ExplanationsFeature.of(ls).store.attach(
            uri, job.text, job.start, job.end, job.model.id, spec.title, action=spec.key
        )
        sink.on_content = lambda text: setattr(att, "text", att.text + text)
        sink.on_start = lambda: refresh_lenses(ls)
    try:
        await sink.begin(
            {
                "action": spec.key,
                "title": spec.title,
                "output": spec.output,
                "model": job.model.id,
                "uri": uri,
                "range": range_json(rng),
                **({"threadId": job.thread_id} if job.thread_id else {}),
                **({"tag": tag} if tag else {}),
            }
        )
        outcome = await run_job(job, client, sink, ls.known_models(settings), tools)
    except BaseException as exc:
        if att is not None and uri is not None:
            ExplanationsFeature.of(ls).store.remove(uri, att.id)
            refresh_lenses(ls)
        if isinstance(exc, asyncio.CancelledError):
            sink.end({"cancelled": True}, "Cancelled")
            raise
        if not isinstance(exc, Exception):
            raise
        if not isinstance(exc, errors.KimiError):  # a bug of ours must not take the server down
            log.exception("unexpected failure in %s", spec.id)
            exc = errors.KimiError(f"{spec.title} failed unexpectedly ({type(exc).__name__}); see the server log.")
        log.warning("%s %s failed (%s) at %s: %s", job.request_id, spec.id, exc.code, settings.effective_base_url, exc)
        await _report(ls, exc, uri, rng, settings, client)
        sink.end({"error": {"code": exc.code, "message": str(exc)}}, "Failed")
        return _fail(spec, job.request_id, exc)

    if att is not None:
        att.text, att.done = outcome.text, True
        refresh_lenses(ls)
    if uri:
        diagnostics.clear(ls, uri)
    ls.ledger.record(outcome.usage, outcome.cost)
    spent = describe(outcome.usage, outcome.cost, outcome.web_searches)
    result = _result(
        spec,
        job.request_id,
        model=outcome.model,
        usage=outcome.usage,
        cost=outcome.cost,
        spent=spent,
        finishReason=outcome.finish_reason,
    )
    done = {"usage": outcome.usage, "cost": outcome.cost, "finishReason": outcome.finish_reason, "spent": spent}
    inline = None
    if spec.key == "next-edit" and uri:  # one change at the cursor: ghost text, not a proposal
        inline = completion.as_inline(ls, job, place(job, outcome.new_code or ""), uri)
    if inline is not None:
        result.update(applied=False, inline=inline)
        sink.end(done, f"Suggested · {spent}")
    elif spec.edits and proposals.wanted(ls, settings):
        result.update(proposals.propose(ls, job, outcome, uri, version))
        sink.end(done, f"{'Proposed' if result.get('proposed') else 'Not proposed'} · {spent}")
    elif spec.edits:
        applied, message = await apply_outcome(ls, job, outcome, uri, rng, version)
        result.update(applied=applied)
        if message:
            result["message"] = message
            _message(ls, lsp.MessageType.Info if applied else lsp.MessageType.Warning, f"{spec.title}: {message}")
        sink.end(done, f"{'Applied' if applied else 'Not applied'} · {spent}")
    else:
        thread = await ThreadsFeature.of(ls).record(job, outcome, uri, job.question, job.references, job.note)
        result.update(text=outcome.text, reasoning=outcome.reasoning, threadId=thread.id, turn=len(thread.turns) - 1)
        if job.references:
            result["references"] = job.references
        if job.note:
            result["note"] = job.note
        done.update(threadId=thread.id)
        sink.end(done, f"Done · {spent}")
        await show_answer(ls, job.request_id, f"{spec.title} ({outcome.model})", outcome.text)
    return result


async def _report(
    ls: KimiLanguageServer,
    exc: errors.KimiError,
    uri: Optional[str],
    rng: Optional[lsp.Range],
    settings: Settings,
    client: Any,
) -> None:
    if isinstance(exc, diagnostics.ACTIONABLE) and uri and rng is not None:
        models: list[str] = []
        if isinstance(exc, errors.ModelNotFound):
            try:
                models = sorted(await ls.refresh_models(client))
            except errors.KimiError:
                models = []
            if exc.successor and (not models or exc.successor in models):  # a retired id: its successor first
                models = [exc.successor, *(m for m in models if m != exc.successor)]
        diagnostics.publish(
            ls,
            uri,
            diagnostics.diagnostic_for(
                exc, rng, region=settings.region, models=models, region_decides=settings.base_url is None
            ),
        )
    kind = lsp.MessageType.Warning if isinstance(exc, errors.Refused) else lsp.MessageType.Error
    text = str(exc)
    _message(ls, kind, text if text.startswith("Kimi") else f"Kimi: {text}")


HANDLERS, _handles = command_table()


def _action_command(name: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def handler(ls: KimiLanguageServer, *args: Any) -> dict[str, Any]:
        return await run_action(ls, BUILTIN_ACTIONS[name], parse_args(ActionArgs, args))

    return handler


for name in BUILTIN_ACTIONS:
    HANDLERS[BUILTIN_ACTIONS[name].command] = _action_command(name)


@_handles("kimi.runAction")
async def run_custom(ls, *args: Any) -> dict:
    a = parse_args(ActionArgs, args)
    settings = await ls.config.pull(a.uri)  # an action added a moment ago must be found
    spec = next((custom_action(c) for c in settings.actions if c.id == a.id), None)
    if spec is None:
        known = ", ".join(c.id for c in settings.actions) or "none configured"
        raise JsonRpcInvalidParams(f"no custom action {a.id!r} in kimi.actions (known: {known})")
    return await run_action(ls, spec, a)


@_handles("kimi.cancel")
async def cancel(ls, *args: Any) -> dict:
    a = parse_args(CancelArg, args)
    return {"cancelled": ls.jobs.cancel(a.requestId)}


@_handles("kimi.refineProposal")
async def refine(ls, *args: Any) -> dict:
    """A follow-up turn of the proposal's request: the model sees the request, the code it proposed and the
    instruction; its answer replaces the proposal's hunks."""
    a = parse_args(RefineArg, args)
    if (p := ProposalsFeature.of(ls).store.by_id.get(a.proposalId)) is None:
        return {**proposals.gone(ls, a.proposalId), "proposalId": a.proposalId}
    doc = ls.document(p.uri)
    if doc is not None and doc.source != p.text:  # catch up with typing not yet seen
        for stale in ProposalsFeature.of(ls).store.changed(p.uri, doc.source):
            proposals.notify(ls, stale)
    why = ""
    if p.state != "ready":
        why = f"the proposal is {p.state}" + (f": {p.message}" if p.message else "")
    elif doc is None or p.selection is None:
        why = "the code it was made for was edited, so it cannot be refined; run the action again"
    if why or doc is None or p.selection is None:
        message = f"{p.job.action.title}: {why}."
        _message(ls, lsp.MessageType.Warning, message)
        return {"applied": False, "proposalId": p.id, "error": {"code": "refused", "message": message}}
    # The original request exactly as sent (so its cached prefix is billed at the cache price), then the turns; the
    # answer is placed where the selection is now (current_job rebases it over the typing since).
    job = dataclasses.replace(
        p.job, request_id=new_request_id(), follow_up=[*p.turns, *proposals.follow_up(p, a.instruction)], refines=p.id
    )
    sel = range_at(doc, *p.selection)
    p.state, p.message, p.refining = "refining", "", job.request_id
    proposals.notify(ls, p)
    try:
        result = await launch(ls, job, p.uri, sel, None)
    finally:
        p.refining = None
        if p.state == "refining":  # failed or cancelled: the proposal as it was stays up for review
            p.state = "ready"
            proposals.notify(ls, p)
    return {**result, "proposalId": p.id}


NEXT_EDIT_LINES = 8  # lines above and below the cursor the model may rewrite


@_handles("kimi.nextEdit")
async def next_edit(ls: KimiLanguageServer, *args: Any) -> dict:
    """The edit the user is likely to make next near the cursor, from their last few edits: an inline completion
    when it starts at the cursor (the next textDocument/inlineCompletion there returns it; the result carries it
    too), else a proposal (or, for clients without proposals, an edit as any action's)."""
    a = parse_args(NextEditArg, args)
    doc = ls.document(a.uri)
    if doc is None:
        exc = errors.Refused(f"{NEXT_EDIT.title}: the document {a.uri} is not open in the editor.")
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(NEXT_EDIT, new_request_id(), exc)
    feature = completion.CompletionFeature.of(ls)
    settings = await ls.config.for_request(a.uri)
    model = ls.model_for(settings)
    offset = offset_at(doc, a.position)
    line = doc.source.count("\n", 0, offset)
    start, end = line_span(doc, max(0, line - NEXT_EDIT_LINES), min(len(doc.lines), line + NEXT_EDIT_LINES + 1))
    edits = feature.recent_edits(a.uri) or ["(none yet)"]
    path = fs_path(a.uri)
    snap = Snapshot(
        text=doc.source,
        start=start,
        end=end,
        language=_language(doc),
        path=ls.display_path(a.uri),
        folder=None if path is None else Path(path).parent,
        instruction="The user's recent edits in this file, oldest first:\n"
        + "\n".join(edits)
        + f"\nThe cursor is on line {line + 1}.",
        generation=getattr(doc, "generation", None),
    )
    sandbox = ls.sandbox(settings)
    try:
        job = await prepare(NEXT_EDIT, snap, settings, model, sandbox, ls.known_models(settings))
    except errors.KimiError as exc:
        return _fail(NEXT_EDIT, new_request_id(), exc)
    feature.cursors[job.request_id] = offset
    rng = range_at(doc, start, end)
    try:
        return await launch(ls, job, a.uri, rng, doc.version, sandbox)
    finally:
        feature.cursors.pop(job.request_id, None)
