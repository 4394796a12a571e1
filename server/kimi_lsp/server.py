"""The language server: shared state plus the lifecycle and settings handlers.

Features live in their own modules, each registered by a `setup(ls)` function (code_actions, commands).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.exceptions import (FeatureRequestError, JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams,
                              JsonRpcInvalidRequest, JsonRpcServerNotInitialized)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method
from pygls.workspace import TextDocument

from . import __version__
from .inline import Explanations
from .keys import KeyStore
from .models import BUILTIN_MODELS, ModelInfo, from_live, resolve
from .redact import redact

if TYPE_CHECKING:  # pydantic and httpx load after `initialize` has been answered (docs/benchmarks.md, B1)
    from .client import ClientPool, KimiClient
    from .settings import Settings

COMMANDS = (
    "kimi.explain", "kimi.refactor", "kimi.fix", "kimi.document", "kimi.ask", "kimi.explainAsComment",
    "kimi.describeImage", "kimi.writeAltText", "kimi.implementMockup", "kimi.runAction", "kimi.listModels",
    "kimi.selectModel", "kimi.setRegion", "kimi.setApiKey", "kimi.clearApiKey", "kimi.status", "kimi.cancel",
    "kimi.showExplanation", "kimi.dismissExplanation", "kimi.clearExplanations", "kimi.keyHelp",
)

log = logging.getLogger(__name__)


REFRESH_AFTER = 0.05  # seconds
# Seconds the editor has to answer a request of ours (tests shorten it).
ASK_TIMEOUT = float(os.environ.get("KIMI_LSP_ASK_TIMEOUT", "10"))
EDIT_TIMEOUT = 3 * ASK_TIMEOUT  # applyEdit and questions to the user: they may be looking at a preview
_ASKED = {lsp.WORKSPACE_APPLY_EDIT: "the edit request", lsp.WINDOW_SHOW_DOCUMENT: "the request to show the answer",
          lsp.WINDOW_SHOW_MESSAGE_REQUEST: "the question", lsp.WORKSPACE_CONFIGURATION: "the settings request",
          lsp.WINDOW_WORK_DONE_PROGRESS_CREATE: "the progress request"}


class ClientRequestError(Exception):
    """A request to the editor that gave no usable answer; the message says why, for the user."""


class _Unreadable(ClientRequestError):
    """The editor's answer could not be decoded (ask_client names the request)."""


class SettingsStore:
    """The `kimi` section as the editor has it: pulled (workspace/configuration, per document scope) and
    pushed (initializationOptions, didChangeConfiguration), plus session overrides from kimi.selectModel /
    kimi.setRegion that hold until the editor's own value for that key changes."""

    def __init__(self, ls: "KimiLanguageServer") -> None:
        self._ls = ls
        self._base: Optional[Settings] = None
        self._init_raw: Any = None  # initializationOptions, validated on first use
        self._by_uri: dict[str, Settings] = {}
        self._overrides: dict[str, tuple[Any, Any]] = {}  # key -> (value, editor's value when set)
        self._reported: set[str] = set()
        self._pending: dict[str, asyncio.Task] = {}
        self._refreshing: set[str] = set()  # scopes with a background refresh scheduled or running
        self.source: Optional[str] = None  # where the settings came from: for the log and the "none arrived" notice

    @property
    def base(self) -> "Settings":
        if self._base is None:
            from .settings import DEFAULTS

            self._base = DEFAULTS
            if self._init_raw is not None:
                raw, self._init_raw = self._init_raw, None
                self._base = self._merge(raw, DEFAULTS)
        return self._base

    @base.setter
    def base(self, value: "Settings") -> None:
        self._base = value

    def seed(self, raw: Any) -> None:
        """initializationOptions: kept raw, so answering `initialize` needs no validation library."""
        self._init_raw = raw
        self.source = "initializationOptions"

    @property
    def can_pull(self) -> bool:
        ws = self._ls.client_capabilities.workspace
        return bool(ws and ws.configuration)

    def push(self, raw: Any) -> Settings:
        """Settings sent by the client (initializationOptions, didChangeConfiguration)."""
        self.source = "workspace/didChangeConfiguration"
        self.base = self._merge(raw, self.base)
        self._by_uri.clear()
        return self.base

    async def pull(self, uri: Optional[str] = None) -> Settings:
        """Fresh settings for a document (per-folder settings work); falls back to the pushed ones."""
        if not self.can_pull:
            return self.current(uri)
        try:  # a request may be waiting for this: half the usual time
            result = await self._ls.ask_client(lsp.WORKSPACE_CONFIGURATION, lsp.ConfigurationParams(
                items=[lsp.ConfigurationItem(scope_uri=uri, section="kimi")]), ASK_TIMEOUT / 2, expect=(list, tuple))
        except ClientRequestError as exc:  # a client that fails the request: keep what we have
            log.warning("workspace/configuration failed: %s", exc)
            return self.current(uri)
        raw = result[0] if result else None
        if raw is None:
            return self.current(uri)
        self.source = "workspace/configuration"
        previous = self._by_uri.get(uri or "", self.base)
        settings = self._merge(raw, previous)
        if uri:
            self._by_uri[uri] = settings
        else:
            self.base = settings
        return self._with_overrides(settings)

    async def for_request(self, uri: Optional[str] = None) -> "Settings":
        """Settings for a request: the ones pulled for this document since the last change, refreshed in the
        background for the next request (didChangeConfiguration drops them, so a change always waits for a
        pull); otherwise a pull now. Saves a round trip to the editor before each request. The refresh waits
        REFRESH_AFTER, so the editor's answer does not compete with sending this request."""
        if self.can_pull and (uri or "") in self._by_uri:
            self._refresh_later(uri)
            return self.current(uri)
        return await self.pull(uri)

    def _refresh_later(self, uri: Optional[str]) -> None:
        """One background refresh per scope at a time: 50 requests at once need one pull, not 50."""
        key = uri or ""
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        def refresh() -> None:
            self.prefetch(uri)
            task = self._pending.get(key)
            if task is None:
                self._refreshing.discard(key)
            else:
                task.add_done_callback(lambda _t: self._refreshing.discard(key))

        asyncio.get_running_loop().call_later(REFRESH_AFTER, refresh)

    def prefetch(self, uri: Optional[str] = None) -> None:
        """Pull in the background (on open, on change) so codeAction finds fresh settings without waiting."""
        if self.can_pull:
            task = asyncio.ensure_future(self.pull(uri))
            self._pending[uri or ""] = task
            task.add_done_callback(lambda _t: self._pending.pop(uri or "", None))

    async def settled(self, uri: Optional[str] = None) -> Settings:
        """`current`, after a pull already in flight for this scope (a local round trip, never the network)."""
        pending = [t for t in (self._pending.get(uri or ""), self._pending.get("")) if t is not None]
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return self.current(uri)

    def current(self, uri: Optional[str] = None) -> Settings:
        """What is known now, with no round trip (for codeAction)."""
        return self._with_overrides(self._by_uri.get(uri or "", self.base))

    def override(self, key: str, value: Any) -> None:
        self._overrides[key] = (value, getattr(self.base, key))

    def changed(self) -> None:
        self._by_uri.clear()

    def _with_overrides(self, settings: Settings) -> Settings:
        update = {}
        for key, (value, editor_value_then) in list(self._overrides.items()):
            if getattr(self.base, key) != editor_value_then:
                del self._overrides[key]  # the user changed the setting itself: it wins again
            else:
                update[key] = value
        return settings.model_copy(update=update) if update else settings

    def _merge(self, raw: Any, previous: "Settings") -> "Settings":
        from .settings import merge_settings

        settings, problems = merge_settings(raw, previous)
        fresh = [p for p in problems if p not in self._reported]
        if fresh:
            self._reported.update(fresh)
            self._ls.window_show_message(lsp.ShowMessageParams(
                type=lsp.MessageType.Warning, message="Kimi: invalid settings ignored: " + "; ".join(fresh)))
        return settings


class Jobs:
    """Running requests by id, so any path (progress cancel, $/cancelRequest, kimi.cancel, a newer request
    for the same range and action) can stop one."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[asyncio.Task, tuple]] = {}

    def start(self, request_id: str, key: tuple, coro) -> asyncio.Task:
        for task, k in list(self.running.values()):
            if k == key:
                task.cancel()
        task = asyncio.ensure_future(coro)
        self.running[request_id] = (task, key)
        task.add_done_callback(lambda _t: self.running.pop(request_id, None))
        return task

    def cancel(self, request_id: Optional[str]) -> int:
        targets = [request_id] if request_id else list(self.running)
        n = 0
        for rid in targets:
            entry = self.running.get(rid)
            if entry and not entry[0].done():
                entry[0].cancel()
                n += 1
        return n


class _Answered:
    """A message that was dealt with while decoding it (answered with an error, or dropped)."""

    jsonrpc = None


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: such numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _to_json(data: Any, default: Callable[[Any], Any]) -> str:
    try:
        return json.dumps(data, default=default, allow_nan=False)
    except ValueError:  # a non-finite number somewhere (the rare path: plain data, then cleaned)
        return json.dumps(_finite(json.loads(json.dumps(data, default=default))), allow_nan=False)


class KimiProtocol(LanguageServerProtocol):
    """pygls' protocol, hardened for a server that must never leave an editor waiting or crash on bad input:
    every request is answered, LSP's lifecycle order is enforced, every answer from the editor resolves the
    request it answers, and everything sent is valid JSON with secrets redacted."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_seen = False
        self.on_exit: Optional[Callable[[int], None]] = None  # set by stdio.py: how `exit` ends this session

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" in data and "id" in data and "method" not in data:
            return self._structure_answer(data)
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if isinstance(data, dict) and "id" in data and "method" in data:  # answer it, or the editor waits forever
                error = JsonRpcInvalidParams(f"invalid parameters for {data.get('method')}")
                self._send_response(data["id"], error=error.to_response_error())
                return _Answered()
            raise

    def _structure_answer(self, data: dict[str, Any]) -> Any:
        """The editor's answer to one of our requests. pygls logs one it cannot decode and never resolves the
        request's future; here the future fails instead, so whoever waits for it goes on."""
        msg_id = data["id"]
        if not isinstance(msg_id, (str, int)):
            log.warning("dropped an answer with an unusable id")
            return _Answered()
        result_type = self._result_types.pop(msg_id, None)
        try:
            if "error" in data:
                if data["error"] is None:
                    raise ValueError("a null error")
                return self._converter.structure(data, lsp.ResponseErrorMessage)
            return self._converter.structure(data, result_type or JsonRPCResponseMessage)
        except Exception as exc:
            log.warning("the editor's answer to request %s could not be read (%s)", msg_id, type(exc).__name__)
            future = self._request_futures.pop(msg_id, None)
            if future is not None and not future.done():
                future.set_exception(_Unreadable("unreadable answer"))
            return _Answered()

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Answered):
            return
        if not hasattr(message, "jsonrpc"):  # valid JSON, but not a JSON-RPC message
            if isinstance(message, dict) and isinstance(message.get("id"), (str, int)) and "method" in message:
                self._send_response(message["id"], error=JsonRpcInvalidRequest("not a JSON-RPC 2.0 request")
                                    .to_response_error())
            else:
                log.warning("dropped a message that is not JSON-RPC")
            return
        method = getattr(message, "method", None)
        if method is not None and (refusal := self._refusal(message.jsonrpc, method)) is not None:
            if hasattr(message, "id"):
                self._send_response(message.id, error=refusal.to_response_error())
            return  # a notification is dropped
        super().handle_message(message)

    def _refusal(self, version: Any, method: str) -> Optional[JsonRpcException]:
        """Why a request or notification must not run now (LSP's lifecycle order), or None."""
        if version != self.VERSION:
            return JsonRpcInvalidRequest(f"unsupported JSON-RPC version {version!r}")
        if method == lsp.INITIALIZE:
            if self.initialize_seen:
                return JsonRpcInvalidRequest("initialize was already received")
            self.initialize_seen = True
        elif method == lsp.EXIT:
            return None
        elif not self.initialize_seen:
            return JsonRpcServerNotInitialized("the server is not initialized: send initialize first")
        elif self._shutdown:
            return JsonRpcInvalidRequest("the server is shutting down")
        return None

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        future = self._request_futures.get(msg_id)
        if future is not None and future.done():  # we stopped waiting (cancelled): a late answer is fine
            self._request_futures.pop(msg_id, None)
            return
        super()._handle_response(msg_id, result, error)

    def _send_response(self, msg_id: Any, result: Any = None, error: Optional[lsp.ResponseError] = None) -> None:
        if error is not None and isinstance(error.data, dict) and "traceback" in error.data:
            error = lsp.ResponseError(code=error.code, message=error.message)  # pygls logged the traceback
        super()._send_response(msg_id, result, error)

    def _send_data(self, data: Any) -> None:
        """Everything sent to the editor leaves here: valid JSON, redacted once per message, one write."""
        if not data:
            return
        if self.writer is None:
            log.error("no connection to send a message on")
            return
        try:
            body = _to_json(data, self._serialize_message)
        except Exception:
            log.exception("a message could not be encoded")
            if hasattr(data, "result") and getattr(data, "id", None) is not None:  # the editor waits for this one
                self._send_response(data.id, error=JsonRpcInternalError("the answer could not be encoded")
                                    .to_response_error())
            return
        clean = redact(body)
        if clean != body and getattr(data, "method", None) == lsp.WORKSPACE_APPLY_EDIT:
            # Redacted, the edit would write "[redacted]" into the user's file: it is not sent at all.
            future = self._request_futures.pop(data.id, None)
            if future is not None and not future.done():
                future.set_exception(ClientRequestError(
                    "the edit was not sent: it contains text shaped like an API key"))
            return
        raw = clean.encode(self.CHARSET)
        if self._include_headers:
            raw = b"Content-Length: %d\r\nContent-Type: %s; charset=%s\r\n\r\n%s" % (
                len(raw), self.CONTENT_TYPE.encode(), self.CHARSET.encode(), raw)
        try:
            res = self.writer.write(raw)
            if inspect.isawaitable(res):
                asyncio.ensure_future(res)
        except BrokenPipeError:
            log.error("the editor closed the connection")
            raise
        except Exception:
            log.exception("a message could not be sent")

    @lsp_method(lsp.SHUTDOWN)
    def lsp_shutdown(self, *args: Any):
        self.shutdown_received = True  # an `exit` sent right behind it (not waiting for the answer) is a clean exit
        if (user_handler := self.fm.features.get(lsp.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):  # callbacks remove entries meanwhile
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True
        return None

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any):
        """Ends the session through `on_exit` (stdio.py: the process ends; TCP: this connection closes)."""
        if self.on_exit is None:
            yield from super().lsp_exit(*args)
            return
        if (user_handler := self.fm.features.get(lsp.EXIT)) is not None:
            yield user_handler, args, None
        self.on_exit(0 if self._shutdown or getattr(self, "shutdown_received", False) else 1)


class KimiLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("kimi-lsp", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
                         protocol_cls=KimiProtocol)
        self.config = SettingsStore(self)
        self.keys = KeyStore()
        self._pool: Optional[ClientPool] = None
        self.jobs = Jobs()
        self.live_models: dict[str, dict[str, ModelInfo]] = {}  # base URL -> live /models
        self.stream_ui = False  # the client renders kimi/stream itself
        self.offline_note: Optional[str] = None
        self.explanations = Explanations()
        self.seen_diagnostics: dict[str, list[str]] = {}  # fs path -> problems the editor showed us
        self.published_diagnostics: dict[str, list[lsp.Diagnostic]] = {}  # ours, by uri
        self._noticed: set[str] = set()

    async def ask_client(self, method: str, params: Any, timeout: float = ASK_TIMEOUT,
                         expect: type | tuple[type, ...] = object) -> Any:
        """A request to the editor that always ends: its result (an instance of `expect`), or ClientRequestError
        when the editor refuses it, does not answer within `timeout` seconds, or answers with junk."""
        what = _ASKED.get(method, method)
        msg_id = str(uuid.uuid4())
        try:
            result = await asyncio.wait_for(self.protocol.send_request_async(method, params, msg_id=msg_id), timeout)
        except asyncio.TimeoutError:
            raise ClientRequestError(f"the editor did not answer {what} within {timeout:g} s") from None
        except _Unreadable:
            raise ClientRequestError(f"the editor's answer to {what} could not be read") from None
        except JsonRpcException as exc:
            raise ClientRequestError(f"the editor refused {what} ({exc.message})") from None
        finally:  # no answer will come, or a late one is dropped
            self.protocol._request_futures.pop(msg_id, None)
            self.protocol._result_types.pop(msg_id, None)
        if not isinstance(result, expect):
            raise ClientRequestError(f"the editor's answer to {what} could not be read")
        return result

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls shows the exception itself to the user; here the editor gets one line, the log has the rest
        (pygls logged the traceback where it caught it)."""
        log.error("internal error (%s): %s", getattr(source, "__name__", source), error)
        if source is not FeatureRequestError:  # a failed request says so in its own answer
            self.window_show_message(lsp.ShowMessageParams(
                type=lsp.MessageType.Error, message="Kimi: internal error; the details are in the server log."))

    def notice_once(self, key: str, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            self.window_show_message(lsp.ShowMessageParams(type=kind, message=message))

    @property
    def pool(self) -> "ClientPool":
        if self._pool is None:
            from .client import ClientPool

            self._pool = ClientPool()
        return self._pool

    def document(self, uri: str) -> Optional[TextDocument]:
        """An open document, or None (never read from disk on the event loop)."""
        return self.workspace.text_documents.get(unquote(uri))

    def model_for(self, settings: Settings) -> ModelInfo:
        return resolve(settings.model, settings.custom_models, self.live_models.get(settings.effective_base_url))

    def known_models(self, settings: Settings) -> list[ModelInfo]:
        live = self.live_models.get(settings.effective_base_url, {})
        ids = dict.fromkeys([*live, *BUILTIN_MODELS, *(c.id for c in settings.custom_models)])
        return [resolve(i, settings.custom_models, live) for i in ids]

    async def kimi(self, settings: "Settings") -> "KimiClient":
        from .client import KimiClient

        key, _ = await self.keys.get(settings.region)
        return KimiClient(self.pool, settings, key)

    async def refresh_models(self, client: KimiClient) -> dict[str, ModelInfo]:
        entries = await client.list_models()
        live = {e["id"]: from_live(e) for e in entries}
        self.live_models[client.base_url] = live
        return live

    def flush_output(self) -> None:
        """Sends what is queued for the editor now rather than at the end of this event-loop turn."""
        flush = getattr(self.protocol.writer, "flush", None)
        if flush is not None:
            flush()

    def capability(self, path: str) -> Any:
        """A client capability by dotted path, or None."""
        node: Any = self.client_capabilities
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                return None
        return node


def _init_settings(options: Any) -> tuple[Any, bool]:
    if not isinstance(options, dict):
        return None, False
    stream = bool(options.get("stream"))
    for key in ("settings", "kimi"):
        if isinstance(options.get(key), dict):
            return options[key], stream
    rest = {k: v for k, v in options.items() if k != "stream"}
    return (rest or None), stream


def setup_lifecycle(ls: KimiLanguageServer) -> None:
    @ls.feature(lsp.INITIALIZE)
    def initialize(ls: KimiLanguageServer, params: lsp.InitializeParams) -> None:
        from .documents import install

        install(ls)  # documents that take an edit in time proportional to the lines it touches
        raw, ls.stream_ui = _init_settings(params.initialization_options)
        if raw is not None:
            ls.config.seed(raw)

    @ls.feature(lsp.INITIALIZED)
    def initialized(ls: KimiLanguageServer, params: lsp.InitializedParams) -> None:
        from .reporting import prune_answers

        ls.config.prefetch(None)
        asyncio.ensure_future(asyncio.to_thread(prune_answers))
        asyncio.ensure_future(asyncio.to_thread(_warm_up))

    @ls.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: KimiLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.config.prefetch(params.text_document.uri)

    @ls.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: KimiLanguageServer, params: lsp.DidChangeConfigurationParams) -> None:
        from .diagnostics import clear_all

        raw = params.settings
        if isinstance(raw, dict) and "kimi" in raw:
            raw = raw["kimi"]  # not an object: merge_settings reports it and keeps the previous settings
        elif not (isinstance(raw, dict) and set(raw) & _setting_keys()):
            raw = None  # another tool's section, or nothing: not ours to apply
        ls.config.changed()
        if ls.config.can_pull:
            ls.config.prefetch(None)
            for uri in list(ls.workspace.text_documents):
                ls.config.prefetch(uri)
        elif raw is not None:
            ls.config.push(raw)
        clear_all(ls)

    @ls.feature(lsp.SHUTDOWN)
    async def shutdown(ls: KimiLanguageServer, params: Any = None) -> None:
        running = [task for task, _ in ls.jobs.running.values()]
        ls.jobs.cancel(None)
        if running:
            await asyncio.wait(running, timeout=2)
        if ls._pool is not None:
            await ls._pool.aclose()


def _setting_keys() -> set[str]:
    from .settings import Settings

    return {f.alias or name for name, f in Settings.model_fields.items()}


def _warm_up() -> None:
    """Load the request path (HTTP, validation, commands) in a worker thread right after start-up, so neither
    `initialize` nor the first request waits for it."""
    from . import commands  # noqa: F401  (pulls in client, settings, actions, tools)


def _deferred_command(name: str):
    async def handler(ls, *args: Any) -> Any:
        from .commands import HANDLERS

        return await HANDLERS[name](ls, *args)
    return handler


def create_server() -> KimiLanguageServer:
    from . import code_actions, inline

    ls = KimiLanguageServer()
    setup_lifecycle(ls)
    code_actions.setup(ls)
    inline.setup(ls)
    for name in COMMANDS:  # registered by name now, implemented in commands.py, loaded on first use
        ls.command(name)(_deferred_command(name))
    return ls
