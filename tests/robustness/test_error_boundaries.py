"""Error boundaries (#13): lifecycle and document notifications fan out to every feature, each behind its own
boundary. A bug in one feature is logged with its traceback, told to the user once, and the other features (and
the server) go on; the background tasks the server owns end at shutdown."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types as lsp

from kimi_lsp.lsp.app import create_server
from kimi_lsp.lsp.feature import Feature


class Broken(Feature):
    def did_change(self, uri: str) -> None:
        raise RuntimeError("a bug in a feature")


class Listening(Feature):
    def __init__(self, ls) -> None:
        super().__init__(ls)
        self.changed: list[str] = []

    def did_change(self, uri: str) -> None:
        self.changed.append(uri)


def started(tmp_path):
    ls = create_server()
    steps = ls.protocol.lsp_initialize(
        lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=tmp_path.as_uri())
    )
    handler, args, _ = next(steps)
    handler(*args)
    return ls


def test_a_failing_feature_is_isolated_logged_and_reported_once(tmp_path, caplog):
    ls = started(tmp_path)
    # the broken feature comes first: the features after it must still hear of the change
    features = dict(ls.features)
    ls.features.clear()
    ls.features[Broken] = Broken(ls)
    ls.features.update(features)
    listening = ls.features[Listening] = Listening(ls)
    shown: list[lsp.ShowMessageParams] = []
    ls.window_show_message = shown.append  # type: ignore[method-assign]
    uri = (tmp_path / "a.py").as_uri()
    ls.workspace.put_text_document(lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text="x = 1\n"))
    change = ls.protocol.fm.features[lsp.TEXT_DOCUMENT_DID_CHANGE]
    params = lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[lsp.TextDocumentContentChangeWholeDocument(text="x = 2\n")],
    )
    with caplog.at_level(logging.ERROR, logger="kimi_lsp"):
        for _ in range(3):
            change(params)
    assert listening.changed == [uri] * 3  # the other features went on
    bugs = [r for r in caplog.records if "Broken failed on didChange" in r.getMessage()]
    assert len(bugs) == 3 and all(r.exc_info and "a bug in a feature" in str(r.exc_info[1]) for r in bugs)
    errors = [m for m in shown if m.type == lsp.MessageType.Error]
    assert len(errors) == 1 and "Broken" in errors[0].message and "keeps running" in errors[0].message


async def test_shutdown_ends_every_background_task(tmp_path):
    ls = started(tmp_path)
    stop = asyncio.Event()
    task = ls.run_task(stop.wait(), "a background wait")
    await ls.end_tasks(timeout=1)
    assert task.cancelled() and not ls._tasks
