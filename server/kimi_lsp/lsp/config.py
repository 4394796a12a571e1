"""The settings store: the `kimi` section as the editor has it, per document scope."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Optional, Protocol

from lsprotocol import types as lsp

from kimi_lsp.lsp.protocol import ASK_TIMEOUT, ClientRequestError

if TYPE_CHECKING:  # pydantic loads after `initialize` has been answered (docs/benchmarks.md, B1)
    from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)

REFRESH_AFTER = 0.05  # seconds


class Editor(Protocol):
    """What the store needs of the server."""

    @property
    def client_capabilities(self) -> lsp.ClientCapabilities: ...
    async def ask_client(
        self, method: str, params: Any, timeout: float = ..., expect: type | tuple[type, ...] = ...
    ) -> Any: ...
    def window_show_message(self, params: lsp.ShowMessageParams) -> None: ...
    def run_task(self, coro: Any, name: str = "") -> asyncio.Task[Any]: ...


class SettingsStore:
    """The `kimi` section as the editor has it: pulled (workspace/configuration, per document scope) and
    pushed (initializationOptions, didChangeConfiguration), plus session overrides from kimi.selectModel /
    kimi.setRegion that hold until the editor's own value for that key changes."""

    def __init__(self, ls: Editor) -> None:
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
    def base(self) -> Settings:
        if self._base is None:
            from kimi_lsp.settings import DEFAULTS

            self._base = DEFAULTS
            if self._init_raw is not None:
                raw, self._init_raw = self._init_raw, None
                self._base = self._merge(raw, DEFAULTS)
        return self._base

    @base.setter
    def base(self, value: Settings) -> None:
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
            result = await self._ls.ask_client(
                lsp.WORKSPACE_CONFIGURATION,
                lsp.ConfigurationParams(items=[lsp.ConfigurationItem(scope_uri=uri, section="kimi")]),
                ASK_TIMEOUT / 2,
                expect=(list, tuple),
            )
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

    async def for_request(self, uri: Optional[str] = None) -> Settings:
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
        if not self.can_pull:
            return
        key = uri or ""
        task = self._ls.run_task(self.pull(uri), f"settings pull for {key or 'the workspace'}")
        self._pending[key] = task

        def done(t: asyncio.Task[Any]) -> None:
            if self._pending.get(key) is t:  # a later pull for the scope stays pending: settled() waits for it
                del self._pending[key]

        task.add_done_callback(done)

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

    def _merge(self, raw: Any, previous: Settings) -> Settings:
        from kimi_lsp.settings import merge_settings

        settings, problems = merge_settings(raw, previous)
        fresh = [p for p in problems if p not in self._reported]
        if fresh:
            self._reported.update(fresh)
            self._ls.window_show_message(
                lsp.ShowMessageParams(
                    type=lsp.MessageType.Warning, message="Kimi: invalid settings ignored: " + "; ".join(fresh)
                )
            )
        return settings
