"""The language server's shared services: settings, running jobs, the model catalogue, keys, the HTTP client pool,
and owned background tasks. Features live in lsp/features/ and are wired by lsp/app.py."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from kimi_lsp import __version__
from kimi_lsp.core.context import ContextBases
from kimi_lsp.kimi.keys import KeyStore
from kimi_lsp.kimi.models import BUILTIN_MODELS, ModelInfo, from_live, resolve
from kimi_lsp.kimi.pricing import Ledger, currency_for
from kimi_lsp.lsp.config import SettingsStore
from kimi_lsp.lsp.jobs import Jobs
from kimi_lsp.lsp.protocol import ASK_TIMEOUT, ClientRequestError, KimiProtocol, Unreadable

if TYPE_CHECKING:  # pydantic and httpx load after `initialize` has been answered (docs/benchmarks.md, B1)
    from kimi_lsp.core.tools import Sandbox
    from kimi_lsp.kimi.http import ClientPool, KimiClient
    from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)
_ASKED = {
    lsp.WORKSPACE_APPLY_EDIT: "the edit request",
    lsp.WINDOW_SHOW_DOCUMENT: "the request to show the answer",
    lsp.WINDOW_SHOW_MESSAGE_REQUEST: "the question",
    lsp.WORKSPACE_CONFIGURATION: "the settings request",
    lsp.WINDOW_WORK_DONE_PROGRESS_CREATE: "the progress request",
}


class KimiLanguageServer(LanguageServer):
    protocol: KimiProtocol

    def __init__(self) -> None:
        super().__init__(
            "kimi-lsp",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=KimiProtocol,
        )
        self.config = SettingsStore(self)
        self.keys = KeyStore()
        self._pool: Optional[ClientPool] = None
        self.jobs = Jobs()
        self.ledger = Ledger()  # what this session's answers cost (kimi.status)
        self.context_bases = ContextBases()  # per document, the file text earlier prompts sent (core.context)
        self.balances: dict[str, tuple[float, float]] = {}  # base URL -> (when read, amount); see account.balance
        self.live_models: dict[str, dict[str, ModelInfo]] = {}  # base URL -> live /models
        self.stream_ui = False  # the client renders kimi/stream itself
        self.proposals_ui = False  # the client shows edits as proposals to review (kimi/proposal)
        self.offline_note: Optional[str] = None
        self.features: dict[type, Any] = {}  # feature class -> its instance (lsp/feature.py, wired by app.py)
        self._tasks: set[asyncio.Task] = set()
        self._noticed: set[str] = set()

    async def ask_client(
        self, method: str, params: Any, timeout: float = ASK_TIMEOUT, expect: type | tuple[type, ...] = object
    ) -> Any:
        """A request to the editor that always ends: its result (an instance of `expect`), or ClientRequestError
        when the editor refuses it, does not answer within `timeout` seconds, or answers with junk."""
        what = _ASKED.get(method, method)
        try:
            result = await asyncio.wait_for(self.protocol.request(method, params, str(uuid.uuid4())), timeout)
        except TimeoutError:
            raise ClientRequestError(f"the editor did not answer {what} within {timeout:g} s") from None
        except Unreadable:
            raise ClientRequestError(f"the editor's answer to {what} could not be read") from None
        except JsonRpcException as exc:
            raise ClientRequestError(f"the editor refused {what} ({exc.message})") from None
        if not isinstance(result, expect):
            raise ClientRequestError(f"the editor's answer to {what} could not be read")
        return result

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls shows the exception itself to the user; here the editor gets one line, the log has the rest
        (pygls logged the traceback where it caught it)."""
        log.error("internal error (%s): %s", getattr(source, "__name__", source), error)
        if source is not FeatureRequestError:  # a failed request says so in its own answer
            self.notice_once(
                f"internal-{getattr(source, '__name__', source)}",
                "Kimi: internal error; the server keeps running, the details are in the server log.",
                lsp.MessageType.Error,
            )

    def notice_once(self, key: str, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> bool:
        """Shows `message` the first time `key` comes up; True when it was shown now."""
        if key in self._noticed:
            return False
        self._noticed.add(key)
        self.window_show_message(lsp.ShowMessageParams(type=kind, message=message))
        return True

    @property
    def pool(self) -> ClientPool:
        if self._pool is None:
            from kimi_lsp.kimi.http import ClientPool

            self._pool = ClientPool()
        return self._pool

    def document(self, uri: str) -> Optional[TextDocument]:
        """An open document, or None (never read from disk on the event loop)."""
        return self.workspace.text_documents.get(unquote(uri))

    def model_for(self, settings: Settings) -> ModelInfo:
        live = self.live_models.get(settings.effective_base_url)
        return resolve(settings.model, settings.custom_models, live, currency_for(settings))

    def known_models(self, settings: Settings) -> list[ModelInfo]:
        live = self.live_models.get(settings.effective_base_url, {})
        ids = dict.fromkeys([*live, *BUILTIN_MODELS, *(c.id for c in settings.custom_models)])
        return [resolve(i, settings.custom_models, live, currency_for(settings)) for i in ids]

    def display_path(self, uri: Optional[str]) -> str:
        """A document's path as the model is shown it: relative to the workspace root where it is inside it."""
        from kimi_lsp.lsp.convert import fs_path

        if not uri:
            return ""
        path = fs_path(uri) or uri
        root = self.workspace.root_path
        if root and path.startswith(root.rstrip("/") + "/"):
            return path[len(root.rstrip("/")) + 1 :]
        return path

    def sandbox(self, settings: Settings) -> Sandbox:
        """The tools', images' and references' sandbox: the workspace folders, open buffers read as the editor has
        them."""
        from pathlib import Path

        from kimi_lsp.core.tools import Sandbox
        from kimi_lsp.lsp.convert import fs_path

        roots = [p for p in (fs_path(f.uri) for f in self.workspace.folders.values()) if p]
        if not roots and self.workspace.root_path:
            roots = [self.workspace.root_path]

        def open_doc(real_path: str) -> Optional[str]:
            """An open buffer's text (only looked up when a tool reads a file: joining text costs time)."""
            found = self.open_document(real_path)
            return found[1].source if found else None

        return Sandbox([Path(r) for r in roots], open_doc, tuple(settings.tool_deny))

    def open_document(self, real_path: str) -> Optional[tuple[str, TextDocument]]:
        """(uri, document) of the open document whose file is `real_path` (symlinks resolved), if any."""
        import os

        from kimi_lsp.lsp.convert import fs_path

        for uri, doc in list(self.workspace.text_documents.items()):
            path = fs_path(uri)
            if path and os.path.realpath(path) == real_path:
                return uri, doc
        return None

    async def kimi(self, settings: Settings) -> KimiClient:
        from kimi_lsp.kimi.http import KimiClient

        key, _ = await self.keys.get(settings.region)
        return KimiClient(self.pool, settings, key)

    async def refresh_models(self, client: KimiClient) -> dict[str, ModelInfo]:
        entries = await client.list_models()
        live = {e["id"]: from_live(e) for e in entries}
        self.live_models[client.base_url] = live
        return live

    def flush_output(self) -> None:
        self.protocol.flush()

    def run_task(self, coro: Any, name: str = "") -> asyncio.Task:
        """A background task the server owns: kept until it ends, its failure logged, cancelled at shutdown."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("background task %s failed", name or t.get_name(), exc_info=exc)

        task.add_done_callback(done)
        return task

    async def end_tasks(self, timeout: float = 2.0) -> None:
        """Shutdown: every running job and background task is cancelled and awaited, the HTTP pool closed."""
        running = [task for task, _ in self.jobs.running.values()] + list(self._tasks)
        self.jobs.cancel(None)
        for task in self._tasks:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout)
        if self._pool is not None:
            await self._pool.aclose()

    def capability(self, path: str) -> Any:
        """A client capability by dotted path, or None."""
        node: Any = self.client_capabilities
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                return None
        return node
