"""Two bugs found while tracing the request flow (#13), each pinned by a test: a second settings prefetch for one
scope must still be waited for, and the problems the editor reported (for the get_diagnostics tool) add up over
code-action ranges and, like kimi's own diagnostics, go when the document closes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from kimi_lsp.lsp.app import create_server
from kimi_lsp.lsp.config import SettingsStore
from kimi_lsp.lsp.features.diagnostics import Diagnostics, publish


class PullingEditor:
    """An editor that answers workspace/configuration when the test says so, one gate per pull."""

    def __init__(self) -> None:
        self.client_capabilities = lsp.ClientCapabilities(workspace=lsp.WorkspaceClientCapabilities(configuration=True))
        self.gates: list[asyncio.Event] = []

    async def ask_client(self, method: str, params: Any, timeout: float = 0, expect: Any = object) -> Any:
        gate = asyncio.Event()
        self.gates.append(gate)
        n = len(self.gates)
        await gate.wait()
        return [{"model": f"kimi-pull-{n}"}]

    def window_show_message(self, params: lsp.ShowMessageParams) -> None:
        pass

    def run_task(self, coro: Any, name: str = "") -> asyncio.Task:
        return asyncio.ensure_future(coro)


async def test_a_second_prefetch_for_a_scope_is_still_waited_for():
    ed = PullingEditor()
    store = SettingsStore(ed)
    uri = "file:///ws/a.py"
    store.prefetch(uri)
    store.prefetch(uri)  # the document changed again before the first answer came
    while len(ed.gates) < 2:
        await asyncio.sleep(0)
    ed.gates[0].set()
    await asyncio.sleep(0.05)  # the first pull is done
    waiter = asyncio.ensure_future(store.settled(uri))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "settled() returned while the second pull was still running"
    ed.gates[1].set()
    assert (await waiter).model == "kimi-pull-2"


def started(root: Path):
    """A server, initialized in-process (no editor process): enough to drive its handlers directly."""
    ls = create_server()
    params = lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=root.as_uri())
    steps = ls.protocol.lsp_initialize(params)
    handler, args, _ = next(steps)
    handler(*args)
    return ls


def handler(ls, method: str):
    return ls.protocol.fm.features[method]


def diag(line: int, message: str) -> lsp.Diagnostic:
    at = lsp.Range(start=lsp.Position(line=line, character=0), end=lsp.Position(line=line, character=1))
    return lsp.Diagnostic(range=at, message=message, source="pyright")


def code_action(uri: str, line: int, diagnostics: list[lsp.Diagnostic]) -> lsp.CodeActionParams:
    at = lsp.Range(start=lsp.Position(line=line, character=0), end=lsp.Position(line=line, character=1))
    return lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        range=at,
        context=lsp.CodeActionContext(diagnostics=diagnostics),
    )


async def test_reported_problems_add_up_over_ranges_and_go_on_close(tmp_path):
    ls = started(tmp_path)
    path = tmp_path / "a.py"
    uri = path.as_uri()
    ls.workspace.put_text_document(lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text="a\nb\nc\nd\n"))
    sent: list[lsp.PublishDiagnosticsParams] = []
    ls.text_document_publish_diagnostics = sent.append  # type: ignore[method-assign]
    actions = handler(ls, lsp.TEXT_DOCUMENT_CODE_ACTION)
    await actions(code_action(uri, 0, [diag(0, "first")]))
    await actions(code_action(uri, 2, [diag(2, "second")]))

    def seen() -> dict[str, list[str]]:
        return Diagnostics.of(ls).seen

    assert seen()[str(path)] == ["line 1: first (pyright)", "line 3: second (pyright)"]  # the file's problems
    await actions(code_action(uri, 0, []))  # asked again where the first was: it is fixed now
    assert seen()[str(path)] == ["line 3: second (pyright)"]

    publish(ls, uri, lsp.Diagnostic(range=diag(1, "").range, message="Kimi: no key", source="kimi", code="no-api-key"))
    assert Diagnostics.of(ls).published[uri]
    handler(ls, lsp.TEXT_DOCUMENT_DID_CLOSE)(
        lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    assert str(path) not in seen() and uri not in Diagnostics.of(ls).published
    assert sent[-1].uri == uri and sent[-1].diagnostics == []  # the editor is told ours are gone


async def test_a_huge_code_action_range_costs_nothing(tmp_path):
    """Remembering the problems of a range compares lines, never lists them: a fuzzed range to line 2**31 - 1
    answers at once."""
    ls = started(tmp_path)
    uri = (tmp_path / "a.py").as_uri()
    ls.workspace.put_text_document(lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text="a\n"))
    at = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=2**31 - 1, character=0))
    params = lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        range=at,
        context=lsp.CodeActionContext(diagnostics=[diag(0, "x")]),
    )
    await asyncio.wait_for(handler(ls, lsp.TEXT_DOCUMENT_CODE_ACTION)(params), 2)
    assert Diagnostics.of(ls).seen[str(tmp_path / "a.py")] == ["line 1: x (pyright)"]
