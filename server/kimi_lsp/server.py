"""The language server: shared state plus the lifecycle and settings handlers.

Features live in their own modules, each registered by a `setup(ls)` function (code_actions, commands).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.workspace import TextDocument

from . import __version__
from .inline import Explanations
from .keys import KeyStore
from .models import BUILTIN_MODELS, ModelInfo, from_live, resolve

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

    @property
    def can_pull(self) -> bool:
        ws = self._ls.client_capabilities.workspace
        return bool(ws and ws.configuration)

    def push(self, raw: Any) -> Settings:
        """Settings sent by the client (initializationOptions, didChangeConfiguration)."""
        self.base = self._merge(raw, self.base)
        self._by_uri.clear()
        return self.base

    async def pull(self, uri: Optional[str] = None) -> Settings:
        """Fresh settings for a document (per-folder settings work); falls back to the pushed ones."""
        if not self.can_pull:
            return self.current(uri)
        try:
            result = await asyncio.wait_for(self._ls.workspace_configuration_async(lsp.ConfigurationParams(
                items=[lsp.ConfigurationItem(scope_uri=uri, section="kimi")])), timeout=5)
        except Exception as exc:  # a client that fails the request: keep what we have
            log.warning("workspace/configuration failed: %s", exc)
            return self.current(uri)
        raw = result[0] if result else None
        if raw is None:
            return self.current(uri)
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
    """A request that could not be decoded and was already answered with an error."""

    jsonrpc = None


class KimiProtocol(LanguageServerProtocol):
    """pygls' protocol, hardened for a server that must never leave an editor waiting or crash on bad input."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if isinstance(data, dict) and "id" in data and "method" in data:  # answer it, or the editor waits forever
                error = JsonRpcInvalidParams(f"invalid parameters for {data.get('method')}")
                self._send_response(data["id"], error=error.to_response_error())
                return _Answered()
            raise

    def handle_message(self, message: Any) -> None:
        if not isinstance(message, _Answered):
            super().handle_message(message)

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        future = self._request_futures.get(msg_id)
        if future is not None and future.done():  # we stopped waiting (cancelled): a late answer is fine
            self._request_futures.pop(msg_id, None)
            return
        super()._handle_response(msg_id, result, error)

    @lsp_method(lsp.SHUTDOWN)
    def lsp_shutdown(self, *args: Any):
        if (user_handler := self.fm.features.get(lsp.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):  # callbacks remove entries meanwhile
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True
        return None


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

    def notice_once(self, key: str, message: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            self.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Info, message=message))

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
