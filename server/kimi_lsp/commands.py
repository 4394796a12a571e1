"""`workspace/executeCommand` handlers. Thin: parse arguments, build a Job, run it, apply or show the result."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from lsprotocol import types as lsp
from pydantic import BaseModel, Field, ValidationError
from pygls.exceptions import JsonRpcInvalidParams

from . import __version__, diagnostics, errors, redact
from .actions import BUILTIN_ACTIONS, IMAGE_ACTIONS, ActionSpec, Job, check_vision, custom_action, run_job
from .editing import apply_outcome, position_at
from .inline import refresh as refresh_lenses
from .instructions import take_instruction
from .keys import KeychainUnavailable, clean_key
from .reporting import LspSink, show_answer
from .settings import Settings
from .tools import ToolBox
from .workspace import load_images, sandbox_for, toolbox_for

if TYPE_CHECKING:
    from .server import KimiLanguageServer

log = logging.getLogger(__name__)


class _Pos(BaseModel):
    line: int = Field(ge=0)
    character: int = Field(ge=0)


class _Range(BaseModel):
    start: _Pos
    end: _Pos


class _Diag(BaseModel):
    message: str
    line: Optional[int] = None
    source: str = ""
    code: Any = None


class ActionArgs(BaseModel):
    uri: Optional[str] = None
    range: Optional[_Range] = None
    instruction: str = ""
    prompt: str = ""
    id: Optional[str] = None
    diagnostics: list[_Diag] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    width: Optional[int] = Field(None, ge=20, le=1000)  # the editor's text width, for comments


def parse_args(model: type[BaseModel], args: tuple) -> Any:
    if len(args) > 1:
        raise JsonRpcInvalidParams(f"expected one object argument, got {len(args)} arguments")
    raw = args[0] if args else {}
    if isinstance(raw, list) and len(args) == 1:  # some clients wrap the arguments once more
        raw = raw[0] if raw else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise JsonRpcInvalidParams(f"expected one object argument, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        raise JsonRpcInvalidParams(f"invalid argument {where}: {first['msg']}") from None


def _language(doc: Any) -> str:
    return getattr(doc, "language_id", None) or ""


_MAX_UINT = 2 ** 31 - 1  # LSP's uinteger


def _clamp(doc: Any, pos: _Pos) -> lsp.Position:
    """`pos` inside the document, in the client's position encoding (documents.LspPositionCodec): past the end of
    a line is its end (Neovim ends a line-wise selection at len(line) + 1), past the last line the document's end,
    inside a character its start."""
    # Huge numbers are past the end too (and would not fit an lsp.Position).
    at = lsp.Position(line=min(pos.line, len(doc.lines)), character=min(pos.character, _MAX_UINT))
    return doc.position_to_client_units(doc.position_from_client_units(at))


def selection_of(doc: Any, r: _Range) -> tuple[lsp.Range, int, int]:
    """The editor's range, clamped to the document and in order, and its offsets into `doc.source`; every edit is
    built from this range, never from the raw one."""
    s, e = _clamp(doc, r.start), _clamp(doc, r.end)
    if (e.line, e.character) < (s.line, s.character):
        s, e = e, s
    return lsp.Range(start=s, end=e), doc.offset_at_position(s), doc.offset_at_position(e)


def _describe(d: _Diag) -> str:
    """A diagnostic as the prompt lists it: `line 5: message (source)`."""
    where = f"line {d.line + 1}: " if d.line is not None else ""
    return where + d.message + (f" ({d.source})" if d.source else "")


def _message(ls: "KimiLanguageServer", kind: lsp.MessageType, text: str) -> None:
    ls.window_show_message(lsp.ShowMessageParams(type=kind, message=text))


def _fail(request_id: str, exc: errors.KimiError) -> dict:
    return {"requestId": request_id, "applied": False, "error": {"code": exc.code, "message": str(exc)}}


async def run_action(ls: "KimiLanguageServer", spec: ActionSpec, a: ActionArgs) -> dict:
    request_id = uuid.uuid4().hex[:10]
    doc = ls.document(a.uri) if a.uri else None
    if a.uri and doc is None:
        exc = errors.Refused(f"{spec.title}: the document {a.uri} is not open in the editor.")
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(request_id, exc)
    if spec.id != "ask" and (doc is None or a.range is None):
        raise JsonRpcInvalidParams(f"{spec.command} needs a uri and a range")

    settings = await ls.config.for_request(a.uri)
    model = ls.model_for(settings)
    text, start, end, rng, version = "", 0, 0, None, None
    if doc is not None and a.range is not None:
        rng, start, end = selection_of(doc, a.range)
        text, version = doc.source, doc.version
    if spec.id in IMAGE_ACTIONS and start == end and doc is not None and rng is not None:
        rng, start, end = _line_of(doc, rng.start.line)  # the line under the cursor
    if spec.edits and start == end and spec.output == "replace":
        exc = errors.Refused(f"{spec.title}: select the code to change first.")
        _message(ls, lsp.MessageType.Warning, str(exc))
        return _fail(request_id, exc)

    job = Job(action=spec, text=text, start=start, end=end, settings=settings, model=model, request_id=request_id,
              language=_language(doc) if doc else "", path=_display_path(ls, a.uri),
              instruction=a.instruction or a.prompt,
              diagnostics=[_describe(d) for d in a.diagnostics], generation=getattr(doc, "generation", None))
    if not job.instruction and spec.id not in IMAGE_ACTIONS and (found := take_instruction(job.selection,
                                                                                          job.language)):
        job.instruction, job.prompt_selection = found  # `# kimi: …` in the code: plain editors cannot prompt
    sandbox = sandbox_for(ls, settings)
    try:
        paths = a.images if spec.id not in IMAGE_ACTIONS else []
        job.images = await load_images(spec, job, a.uri, paths, sandbox)
        check_vision(job, ls.known_models(settings))
    except errors.KimiError as exc:
        _message(ls, lsp.MessageType.Warning, f"Kimi: {exc}")
        return _fail(request_id, exc)
    tools = toolbox_for(ls, settings, model, sandbox)
    job.width = a.width or 100
    key = (a.uri, (start, end), spec.command, a.id)
    log.info("%s %s: model %s at %s (settings from %s)", request_id, spec.id, model.id,
             settings.effective_base_url, ls.config.source or "defaults")
    _no_settings_notice(ls, settings)
    task = ls.jobs.start(request_id, key, _execute(ls, job, a.uri, rng, version, tools))
    if _immediate(ls, settings):
        # eglot waits for executeCommand synchronously (10 s) and freezes Emacs meanwhile: answer now; the job
        # delivers through progress, applyEdit and messages, and kimi.cancel or the progress cancel stop it.
        return {"requestId": request_id, "started": True}
    _link_request_cancel(ls, task)
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and not asyncio.current_task().cancelling():
            return {"requestId": request_id, "applied": False, "cancelled": True}
        raise


def _immediate(ls: "KimiLanguageServer", settings: Settings) -> bool:
    return settings.command_result == "immediate" or (settings.command_result == "auto" and not ls.stream_ui)


def _no_settings_notice(ls: "KimiLanguageServer", settings: Settings) -> None:
    """Said once: no settings arrived (no workspace/configuration, no push, no initializationOptions)."""
    if ls.config.source is not None:
        return
    text = (f"Kimi: no settings came from the editor, so the defaults are in use (model {settings.model}, "
            f"{settings.effective_base_url}). This editor neither answers workspace/configuration nor sends "
            "settings: pass the kimi section as initializationOptions (Neovim before 0.11: init_options = { kimi = "
            "{ ... } }) or with workspace/didChangeConfiguration. See docs/editors.md.")
    if "no-settings" not in ls._noticed:
        log.warning("no settings from the editor; defaults in use (%s, %s)", settings.model,
                    settings.effective_base_url)
    ls.notice_once("no-settings", text, lsp.MessageType.Warning)


def _link_request_cancel(ls: "KimiLanguageServer", task: asyncio.Task) -> None:
    """`$/cancelRequest` cancels pygls' result future for this request; make it stop the job too."""
    msg_id = ls.protocol.msg_id
    fut = ls.protocol._request_futures.get(msg_id) if msg_id is not None else None
    if fut is not None:
        fut.add_done_callback(lambda f: f.cancelled() and task.cancel())


def _display_path(ls: "KimiLanguageServer", uri: Optional[str]) -> str:
    if not uri:
        return ""
    from pygls.uris import to_fs_path

    path = to_fs_path(uri) or uri
    root = ls.workspace.root_path
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return path


def _line_of(doc: Any, line: int) -> tuple[lsp.Range, int, int]:
    lines = doc.lines
    line = min(line, max(0, len(lines) - 1))
    start = doc.offset_at_position(lsp.Position(line=line, character=0))
    end = start + len(lines[line]) if lines else 0
    return lsp.Range(start=position_at(doc, start), end=position_at(doc, end)), start, end


async def _execute(ls: "KimiLanguageServer", job: Job, uri: Optional[str], rng: Optional[lsp.Range],
                   version: Optional[int], tools: Optional[ToolBox] = None) -> dict:
    spec, settings = job.action, job.settings
    sink = LspSink(ls, job.request_id, spec.title, job.model.id)
    client = await ls.kimi(settings)
    att = None
    if spec.output == "show" and spec.id in ("explain", "ask") and uri and rng is not None and job.start < job.end:
        # The answer stays attached to its range (hover, code lens), filling in while it streams.
        att = ls.explanations.attach(uri, job.text, job.start, job.end, job.model.id, spec.title)
        sink.on_content = lambda text: setattr(att, "text", att.text + text)
        sink.on_start = lambda: refresh_lenses(ls)
    try:
        await sink.begin({"action": spec.id, "title": spec.title, "output": spec.output, "model": job.model.id,
                          "uri": uri, "range": _range_json(rng)})
        outcome = await run_job(job, client, sink, ls.known_models(settings), tools)
    except BaseException as exc:
        if att is not None:
            ls.explanations.remove(uri, att.id)
            refresh_lenses(ls)
        if isinstance(exc, asyncio.CancelledError):
            sink.end({"cancelled": True}, "Cancelled")
            raise
        if not isinstance(exc, Exception):
            raise
        if not isinstance(exc, errors.KimiError):  # a bug of ours must not take the server down
            log.exception("unexpected failure in %s", spec.id)
            exc = errors.KimiError(f"{spec.title} failed unexpectedly ({type(exc).__name__}); see the server log.")
        log.warning("%s %s failed (%s) at %s: %s", job.request_id, spec.id, exc.code, settings.effective_base_url,
                    exc)
        await _report(ls, exc, uri, rng, settings, client)
        sink.end({"error": {"code": exc.code, "message": str(exc)}}, "Failed")
        return _fail(job.request_id, exc)

    if att is not None:
        att.text, att.done = outcome.text, True
        refresh_lenses(ls)
    if uri:
        diagnostics.clear(ls, uri)
    result = {"requestId": job.request_id, "model": outcome.model, "usage": outcome.usage,
              "finishReason": outcome.finish_reason}
    done = {"usage": outcome.usage, "finishReason": outcome.finish_reason}
    if spec.edits:
        applied, message = await apply_outcome(ls, job, outcome, uri, rng, version)
        result.update(applied=applied)
        if message:
            result["message"] = message
            _message(ls, lsp.MessageType.Info if applied else lsp.MessageType.Warning, f"{spec.title}: {message}")
        sink.end(done, "Applied" if applied else "Not applied")
    else:
        result.update(text=outcome.text, reasoning=outcome.reasoning)
        sink.end(done, "Done")
        await show_answer(ls, job.request_id, f"{spec.title} ({outcome.model})", outcome.text)
    return result


def _range_json(rng: Optional[lsp.Range]) -> Optional[dict]:
    if rng is None:
        return None
    return {"start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character}}


async def _report(ls: "KimiLanguageServer", exc: errors.KimiError, uri: Optional[str], rng: Optional[lsp.Range],
                  settings: Settings, client: Any) -> None:
    if isinstance(exc, diagnostics.ACTIONABLE) and uri and rng is not None:
        models: list[str] = []
        if isinstance(exc, errors.ModelNotFound):
            try:
                models = sorted(await ls.refresh_models(client))
            except errors.KimiError:
                models = []
        diagnostics.publish(ls, uri, diagnostics.diagnostic_for(exc, rng, region=settings.region, models=models,
                                                                 region_decides=settings.base_url is None))
    kind = lsp.MessageType.Warning if isinstance(exc, errors.Refused) else lsp.MessageType.Error
    text = str(exc)
    _message(ls, kind, text if text.startswith("Kimi") else f"Kimi: {text}")


class _ModelArg(BaseModel):
    model: str = Field(min_length=1)


class _RegionArg(BaseModel):
    region: str


class _KeyArg(BaseModel):
    key: str = Field(min_length=1)


class _ExplanationArg(BaseModel):
    uri: Optional[str] = None
    id: Optional[str] = None


class _NoArgs(BaseModel):
    pass


class _CancelArg(BaseModel):
    requestId: Optional[str] = None


async def status(ls: "KimiLanguageServer") -> dict:
    settings = await ls.config.settled()
    key, source = await ls.keys.get(settings.region)
    return {"model": settings.model, "region": settings.region, "baseUrl": settings.effective_base_url,
            "keySource": source, "keyPresent": bool(key), "version": __version__,
            "running": len(ls.jobs.running), "offline": ls.offline_note}


HANDLERS: dict[str, Callable[..., Awaitable[Any]]] = {}


def _handles(name: str):
    def register(fn):
        HANDLERS[name] = fn
        return fn
    return register


def _action_command(name: str):
    async def handler(ls, *args: Any) -> dict:
        return await run_action(ls, BUILTIN_ACTIONS[name], parse_args(ActionArgs, args))
    return handler


for name in BUILTIN_ACTIONS:
    HANDLERS[BUILTIN_ACTIONS[name].command] = _action_command(name)


@_handles("kimi.clearExplanations")
async def clear_explanations(ls, *args: Any) -> dict:
    a = parse_args(_ExplanationArg, args)
    n = ls.explanations.clear(a.uri)
    refresh_lenses(ls)
    return {"cleared": n}


@_handles("kimi.dismissExplanation")
async def dismiss_explanation(ls, *args: Any) -> dict:
    a = parse_args(_ExplanationArg, args)
    n = ls.explanations.remove(a.uri, a.id) if a.uri else 0
    refresh_lenses(ls)
    return {"cleared": n}


@_handles("kimi.showExplanation")
async def show_explanation(ls, *args: Any) -> dict:
    a = parse_args(_ExplanationArg, args)
    att = next((x for x in ls.explanations.by_uri.get(a.uri or "", []) if x.id == a.id), None)
    if att is None:
        raise JsonRpcInvalidParams("that explanation is gone (the code changed or it was dismissed)")
    # Clients that render `kimi/stream` show the returned text in their own answer view; others get a document.
    await show_answer(ls, f"explanation-{att.id}", f"{att.title} ({att.model})", att.text)
    return {"text": att.text, "model": att.model, "title": att.title, "done": att.done}


@_handles("kimi.runAction")
async def run_custom(ls, *args: Any) -> dict:
    a = parse_args(ActionArgs, args)
    settings = await ls.config.pull(a.uri)  # an action added a moment ago must be found
    spec = next((custom_action(c) for c in settings.actions if c.id == a.id), None)
    if spec is None:
        known = ", ".join(c.id for c in settings.actions) or "none configured"
        raise JsonRpcInvalidParams(f"no custom action {a.id!r} in kimi.actions (known: {known})")
    return await run_action(ls, spec, a)


@_handles("kimi.listModels")
async def list_models(ls, *args: Any) -> dict:
    parse_args(_NoArgs, args)
    settings = await ls.config.pull(None)
    error = None
    live: dict = {}
    try:
        live = await ls.refresh_models(await ls.kimi(settings))
    except errors.KimiError as exc:
        error = str(exc)
    custom = {c.id for c in settings.custom_models}
    models = []
    for info in ls.known_models(settings):
        source = "custom" if info.id in custom else "live" if info.id in live else "builtin"
        models.append({**info.to_json(), "source": source})
    return {"models": models, "current": settings.model, "error": error}


@_handles("kimi.selectModel")
async def select_model(ls, *args: Any) -> dict:
    a = parse_args(_ModelArg, args)
    ls.config.override("model", a.model.strip())
    diagnostics.clear_all(ls)
    return await status(ls)


@_handles("kimi.setRegion")
async def set_region(ls, *args: Any) -> dict:
    a = parse_args(_RegionArg, args)
    if a.region not in ("international", "china"):
        raise JsonRpcInvalidParams("region must be 'international' or 'china'")
    ls.config.override("region", a.region)
    diagnostics.clear_all(ls)
    return await status(ls)


@_handles("kimi.setApiKey")
async def set_api_key(ls, *args: Any) -> dict:
    raw = args[0] if args else None
    a = _KeyArg(key=raw) if isinstance(raw, str) and raw else parse_args(_KeyArg, args)
    redact.register(a.key)  # even a key refused below must not come back in a message
    try:
        key = clean_key(a.key)
    except errors.InvalidApiKey as exc:
        _message(ls, lsp.MessageType.Warning, f"Kimi: {exc}")
        return {"stored": False, "verified": False, "message": str(exc)}
    settings = await ls.config.settled()
    stored, note = True, ""
    try:
        await ls.keys.set(settings.region, key)
    except KeychainUnavailable as exc:
        stored = False
        ls.keys.remember(settings.region, key)
        note = f"{exc} The key is kept in memory for this session only."
    verified, verdict = await _verify(ls, settings)
    where = f"stored in the OS keychain for the {settings.region} region" if stored else "not stored"
    message = f"Kimi API key {where}. {verdict} {note}".strip()
    _message(ls, lsp.MessageType.Info if verified and stored else lsp.MessageType.Warning, message)
    if verified:
        diagnostics.clear_all(ls)
    return {"stored": stored, "verified": verified, "message": message}


@_handles("kimi.keyHelp")
async def key_help(ls, *args: Any) -> dict:
    """For editors without a password prompt of ours: how to give the server a key."""
    settings = await ls.config.settled()
    console = "platform.moonshot.cn" if settings.region == "china" else "platform.moonshot.ai"
    message = (f"Kimi needs an API key for the {settings.region} region (create one at {console}). Set "
               "MOONSHOT_API_KEY in the environment your editor starts kimi-lsp from and restart the server, or "
               f"store it in the OS keychain from a terminal with: kimi-lsp set-key --region {settings.region}")
    # Offered on a key error, and Kimi does nothing until it is followed: shown as an error, because some
    # editors (ALE) hide lesser messages by default.
    _message(ls, lsp.MessageType.Error, message)
    return {"message": message}


@_handles("kimi.clearApiKey")
async def clear_api_key(ls, *args: Any) -> dict:
    parse_args(_NoArgs, args)
    settings = await ls.config.settled()
    try:
        cleared = await ls.keys.clear(settings.region)
        message = (f"Removed the {settings.region} key from the OS keychain." if cleared
                   else f"No {settings.region} key was stored in the OS keychain.")
    except KeychainUnavailable as exc:
        cleared, message = False, str(exc)
    _message(ls, lsp.MessageType.Info, f"Kimi: {message}")
    return {"cleared": cleared, "message": message}


@_handles("kimi.status")
async def status_command(ls, *args: Any) -> dict:
    parse_args(_NoArgs, args)
    return await status(ls)


@_handles("kimi.cancel")
async def cancel(ls, *args: Any) -> dict:
    a = parse_args(_CancelArg, args)
    return {"cancelled": ls.jobs.cancel(a.requestId)}


async def _verify(ls: "KimiLanguageServer", settings: Settings) -> tuple[bool, str]:
    try:
        await ls.refresh_models(await ls.kimi(settings))
        return True, f"{settings.effective_base_url} accepted it."
    except errors.Unauthorized:
        return False, (f"But {settings.effective_base_url} rejected it: check that it is a {settings.region} key "
                       "(international and China keys are not interchangeable).")
    except errors.KimiError as exc:
        return False, f"It could not be verified: {exc}"

