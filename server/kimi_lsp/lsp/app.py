"""Creates the server and registers its features in order. Lifecycle and document notifications fan out to every
feature, each behind its own error boundary: a bug in one is logged once with its traceback, told to the user
once, and the others (and the server) go on."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types as lsp

from kimi_lsp.lsp.feature import Feature
from kimi_lsp.lsp.features.code_actions import CodeActions
from kimi_lsp.lsp.features.completion import CompletionFeature
from kimi_lsp.lsp.features.diagnostics import Diagnostics
from kimi_lsp.lsp.features.explanations import ExplanationsFeature
from kimi_lsp.lsp.features.proposals import ProposalsFeature
from kimi_lsp.lsp.features.threads import ThreadsFeature
from kimi_lsp.lsp.server import KimiLanguageServer

log = logging.getLogger(__name__)

# Every command, by the module that implements it: registered by name now, loaded on first use (or by the warm-up
# right after start-up), so `initialize` is answered before pydantic and httpx load.
_ACTIONS = "kimi_lsp.lsp.features.actions"
_ACCOUNT = "kimi_lsp.lsp.features.account"
_EXPLANATIONS = "kimi_lsp.lsp.features.explanations"
_PROPOSALS = "kimi_lsp.lsp.features.proposals"
_COMPLETION = "kimi_lsp.lsp.features.completion"
_THREADS = "kimi_lsp.lsp.features.threads"
COMMANDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "kimi.explain",
            "kimi.refactor",
            "kimi.fix",
            "kimi.document",
            "kimi.ask",
            "kimi.explainAsComment",
            "kimi.describeImage",
            "kimi.writeAltText",
            "kimi.implementMockup",
            "kimi.runAction",
            "kimi.cancel",
            "kimi.refineProposal",
            "kimi.nextEdit",
        ),
        _ACTIONS,
    ),
    **dict.fromkeys(
        (
            "kimi.listModels",
            "kimi.selectModel",
            "kimi.setRegion",
            "kimi.setApiKey",
            "kimi.clearApiKey",
            "kimi.status",
            "kimi.keyHelp",
        ),
        _ACCOUNT,
    ),
    **dict.fromkeys(("kimi.showExplanation", "kimi.dismissExplanation", "kimi.clearExplanations"), _EXPLANATIONS),
    **dict.fromkeys(("kimi.acceptProposal", "kimi.rejectProposal", "kimi.listProposals"), _PROPOSALS),
    "kimi.completionAccepted": _COMPLETION,
    **dict.fromkeys(
        ("kimi.threads", "kimi.thread", "kimi.deleteThread", "kimi.exportThread", "kimi.applyFromThread"), _THREADS
    ),
}
FEATURES: tuple[type[Feature], ...] = (
    Diagnostics,
    ExplanationsFeature,
    ProposalsFeature,
    CompletionFeature,
    ThreadsFeature,
    CodeActions,
)


CLIENT_FLAGS = ("stream", "proposals")  # what a client says it renders itself (docs/protocol.md)


def _init_settings(options: Any) -> tuple[Any, dict[str, bool]]:
    if not isinstance(options, dict):
        return None, {}
    flags = {k: bool(options.get(k)) for k in CLIENT_FLAGS}
    for key in ("settings", "kimi"):
        if isinstance(options.get(key), dict):
            return options[key], flags
    rest = {k: v for k, v in options.items() if k not in CLIENT_FLAGS}
    return (rest or None), flags


def _fan_out(ls: KimiLanguageServer, event: str, call: Callable[[Feature], Any]) -> None:
    """Calls every feature's hook; a failing one is logged and reported once, and the rest still run."""
    for feature in ls.features.values():
        try:
            call(feature)
        except Exception:
            _report_bug(ls, feature, event)


async def _fan_out_async(ls: KimiLanguageServer, event: str, call: Callable[[Feature], Awaitable[None]]) -> None:
    for feature in ls.features.values():
        try:
            await call(feature)
        except Exception:
            _report_bug(ls, feature, event)


def _report_bug(ls: KimiLanguageServer, feature: Feature, event: str) -> None:
    name = type(feature).__name__
    log.exception("%s failed on %s", name, event)
    ls.notice_once(
        f"bug-{name}",
        f"Kimi: internal error in {name} ({event}); the server keeps running, the details are in the server log.",
        lsp.MessageType.Error,
    )


def setup_lifecycle(ls: KimiLanguageServer) -> None:
    @ls.feature(lsp.INITIALIZE)
    def initialize(ls: KimiLanguageServer, params: lsp.InitializeParams) -> None:
        from kimi_lsp.lsp.documents import install

        install(ls)  # documents that take an edit in time proportional to the lines it touches
        raw, flags = _init_settings(params.initialization_options)
        ls.stream_ui, ls.proposals_ui = flags.get("stream", False), flags.get("proposals", False)
        if raw is not None:
            ls.config.seed(raw)

    @ls.feature(lsp.INITIALIZED)
    def initialized(ls: KimiLanguageServer, params: lsp.InitializedParams) -> None:
        from kimi_lsp.lsp.features.reporting import prune_answers

        ls.config.prefetch(None)
        ls.run_task(asyncio.to_thread(prune_answers), "prune answers")
        ls.run_task(asyncio.to_thread(_warm_up), "warm-up")
        _fan_out(ls, "initialized", lambda f: f.initialized())

    @ls.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: KimiLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.config.prefetch(uri)
        _fan_out(ls, "didOpen", lambda f: f.did_open(uri))

    @ls.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: KimiLanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        _fan_out(ls, "didChange", lambda f: f.did_change(uri))

    @ls.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: KimiLanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        _fan_out(ls, "didClose", lambda f: f.did_close(uri))

    @ls.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: KimiLanguageServer, params: lsp.DidChangeConfigurationParams) -> None:
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
        _fan_out(ls, "didChangeConfiguration", lambda f: f.configuration_changed())

    @ls.feature(lsp.SHUTDOWN)
    async def shutdown(ls: KimiLanguageServer, params: Any = None) -> None:
        try:
            await _fan_out_async(ls, "shutdown", lambda f: f.shutdown())
            await ls.end_tasks()
        except asyncio.CancelledError:  # `exit` came right behind `shutdown`: the session is over, nothing to report
            return


def _setting_keys() -> set[str]:
    from kimi_lsp.settings import Settings

    return {f.alias or name for name, f in Settings.model_fields.items()}


# What every request uses beyond the command modules (B5 measures growth from the idle server: loading these on
# the first requests instead would count as growth, and make the first request wait).
REQUEST_PATH = (
    "kimi_lsp.kimi.http",
    "kimi_lsp.core.request",
    "kimi_lsp.core.outputs",
    "kimi_lsp.core.pipeline",
    "kimi_lsp.lsp.features.results",
    "kimi_lsp.lsp.features.reporting",
)


def _warm_up() -> None:
    """Load the request path (HTTP, validation, commands) in a worker thread right after start-up, so neither
    `initialize` nor the first request waits for it."""
    for module in dict.fromkeys([*COMMANDS.values(), *REQUEST_PATH]):
        importlib.import_module(module)


def handlers() -> dict[str, Callable[..., Awaitable[Any]]]:
    """Every command's implementation (loads them all)."""
    out: dict[str, Callable[..., Awaitable[Any]]] = {}
    for module in dict.fromkeys(COMMANDS.values()):
        out.update(importlib.import_module(module).HANDLERS)
    return out


def _deferred_command(name: str, module: str) -> Callable[..., Awaitable[Any]]:
    async def handler(ls: KimiLanguageServer, *args: Any) -> Any:
        return await importlib.import_module(module).HANDLERS[name](ls, *args)

    return handler


def create_server() -> KimiLanguageServer:
    ls = KimiLanguageServer()
    setup_lifecycle(ls)
    for cls in FEATURES:
        feature = ls.features[cls] = cls(ls)
        feature.register()
    for name, module in COMMANDS.items():
        ls.command(name)(_deferred_command(name, module))
    return ls
