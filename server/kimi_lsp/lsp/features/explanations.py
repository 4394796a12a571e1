"""Inline explanations: an explain's answer stays attached to its range (hover, code lens) and follows edits."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp

from kimi_lsp.core.edits import changed_span, shift
from kimi_lsp.lsp.feature import Feature, command_table

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

log = logging.getLogger(__name__)


@dataclass
class Attachment:
    id: str
    start: int  # code-point offsets into the document's current text
    end: int
    model: str
    title: str
    text: str = ""
    done: bool = False
    action: str = "explain"  # the key of the action that wrote it


class Explanations:
    """Attachments per document, moved by edits above them and dropped when their own text changes."""

    def __init__(self) -> None:
        self.by_uri: dict[str, list[Attachment]] = {}
        self._text: dict[str, str] = {}  # the text the offsets refer to
        self._ids = itertools.count(1)

    def attach(
        self, uri: str, text: str, start: int, end: int, model: str, title: str, action: str = "explain"
    ) -> Attachment:
        # A new explanation of the same range replaces the old one.
        self.by_uri[uri] = [a for a in self.by_uri.get(uri, []) if (a.start, a.end) != (start, end)]
        att = Attachment(str(next(self._ids)), start, end, model, title, action=action)
        self.by_uri[uri].append(att)
        self._text[uri] = text
        return att

    def remove(self, uri: str, att_id: Optional[str] = None) -> int:
        before = self.by_uri.get(uri, [])
        kept = [a for a in before if att_id is not None and a.id != att_id]
        self.by_uri[uri] = kept
        if not kept:
            self.by_uri.pop(uri, None)
            self._text.pop(uri, None)
        return len(before) - len(kept)

    def clear(self, uri: Optional[str] = None) -> int:
        uris = [uri] if uri else list(self.by_uri)
        return sum(self.remove(u) for u in uris)

    def document_changed(self, uri: str, new_text: str) -> bool:
        """Moves or drops attachments after an edit; True when any of them changed."""
        atts = self.by_uri.get(uri)
        old = self._text.get(uri)
        if not atts or old is None or old is new_text:
            return False
        span = changed_span(old, new_text)
        self._text[uri] = new_text
        if span[0] == span[1] == span[2]:
            return False
        kept = []
        for a in atts:
            moved = shift(span, a.start, a.end)
            if moved is not None:  # None: the edit touched the explained text itself, which is now stale
                a.start, a.end = moved
                kept.append(a)
        self.by_uri[uri] = kept
        return True

    def at(self, uri: str, offset: int) -> Optional[Attachment]:
        for a in reversed(self.by_uri.get(uri, [])):
            if a.start <= offset < a.end or (a.start == a.end == offset):
                return a
        return None


# -- LSP features --------------------------------------------------------------------------------------------------


def _range(doc: Any, a: Attachment) -> lsp.Range:
    def pos(offset: int) -> lsp.Position:
        return doc.position_to_client_units(doc.server_position_at_offset(offset))

    return lsp.Range(start=pos(a.start), end=pos(a.end))


def hover_markdown(a: Attachment) -> str:
    """The hover's Markdown: the model's text can carry images and HTML that an editor would fetch or render."""
    state = "" if a.done else "\n\n_…still writing_"
    text = a.text.strip() or "_waiting for the first words…_"
    from kimi_lsp.core.markdown import safe_markdown  # first hover, not start-up (B1)

    return safe_markdown(f"**{a.title}** · `{a.model}`\n\n{text}{state}")


class ExplanationsFeature(Feature):
    """Hover and code lens over the attached answers; the store follows the document's edits."""

    def __init__(self, ls: KimiLanguageServer) -> None:
        super().__init__(ls)
        self.store = Explanations()

    def did_change(self, uri: str) -> None:
        doc = self.ls.document(uri)
        if doc is not None and uri in self.store.by_uri and self.store.document_changed(uri, doc.source):
            refresh(self.ls)

    def did_close(self, uri: str) -> None:
        if self.store.remove(uri):
            refresh(self.ls)

    def register(self) -> None:
        ls, store = self.ls, self.store

        @ls.feature(lsp.TEXT_DOCUMENT_HOVER)
        async def hover(ls, params: lsp.HoverParams) -> Optional[lsp.Hover]:
            uri = params.text_document.uri
            doc = ls.document(uri)
            if doc is None or uri not in store.by_uri:
                return None
            settings = ls.config.current(uri)
            if not settings.inline.hover:
                return None
            if params.position.line >= len(doc.lines):
                return None
            a = store.at(uri, doc.offset_at_position(params.position))
            if a is None:
                return None
            where = _range(doc, a)
            formats = ls.capability("text_document.hover.content_format") or [lsp.MarkupKind.PlainText]
            if lsp.MarkupKind.Markdown in formats:
                value = await asyncio.to_thread(hover_markdown, a)  # a long answer takes a while to parse
                return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=value), range=where)
            from kimi_lsp.core.markdown import plain_text

            value = await asyncio.to_thread(lambda: plain_text(hover_markdown(a)))  # eglot, ALE: plain text only
            return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.PlainText, value=value), range=where)

        @ls.feature(lsp.TEXT_DOCUMENT_CODE_LENS, lsp.CodeLensOptions(resolve_provider=False))
        async def code_lens(ls, params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
            uri = params.text_document.uri
            doc = ls.document(uri)
            if doc is None or not ls.config.current(uri).inline.code_lens:
                return []
            lenses = []
            for a in store.by_uri.get(uri, []):
                r = _range(doc, a)
                head = lsp.Range(start=r.start, end=r.start)
                args = {"uri": uri, "id": a.id}
                rerun = {
                    "uri": uri,
                    "range": {
                        "start": {"line": r.start.line, "character": r.start.character},
                        "end": {"line": r.end.line, "character": r.end.character},
                    },
                }
                label = "Kimi: explained · hover to read" if a.done else "Kimi: explaining…"
                for title, command, arg in (
                    (label, "kimi.showExplanation", args),
                    ("re-run", "kimi.explain", rerun),
                    ("dismiss", "kimi.dismissExplanation", args),
                ):
                    lenses.append(
                        lsp.CodeLens(range=head, command=lsp.Command(title=title, command=command, arguments=[arg]))
                    )
            return lenses


def refresh(ls: KimiLanguageServer) -> None:
    """Ask the client to re-request code lenses, where it supports that."""
    if ls.capability("workspace.code_lens.refresh_support"):
        try:
            ls.workspace_code_lens_refresh(None)
        except Exception:  # the editor's trouble, not the request's
            log.debug("codeLens/refresh failed", exc_info=True)


# -- commands (loaded on first use: they validate their arguments with pydantic) ---------------------------------

HANDLERS, _handles = command_table()


@_handles("kimi.clearExplanations")
async def clear_explanations(ls: KimiLanguageServer, *args: Any) -> dict[str, Any]:
    from kimi_lsp.lsp.args import ExplanationArg, parse_args

    a = parse_args(ExplanationArg, args)
    n = ExplanationsFeature.of(ls).store.clear(a.uri)
    refresh(ls)
    return {"cleared": n}


@_handles("kimi.dismissExplanation")
async def dismiss_explanation(ls: KimiLanguageServer, *args: Any) -> dict[str, Any]:
    from kimi_lsp.lsp.args import ExplanationArg, parse_args

    a = parse_args(ExplanationArg, args)
    n = ExplanationsFeature.of(ls).store.remove(a.uri, a.id) if a.uri else 0
    refresh(ls)
    return {"cleared": n}


@_handles("kimi.showExplanation")
async def show_explanation(ls: KimiLanguageServer, *args: Any) -> dict[str, Any]:
    from kimi_lsp.lsp.args import ExplanationArg, parse_args

    a = parse_args(ExplanationArg, args)
    att = next((x for x in ExplanationsFeature.of(ls).store.by_uri.get(a.uri or "", []) if x.id == a.id), None)
    if att is None:
        from pygls.exceptions import JsonRpcInvalidParams

        raise JsonRpcInvalidParams("that explanation is gone (the code changed or it was dismissed)")
    # Clients that render `kimi/stream` show the returned text in their own answer view; others get a document.
    from kimi_lsp.lsp.features.reporting import show_answer

    await show_answer(ls, f"explanation-{att.id}", f"{att.title} ({att.model})", att.text)
    return {
        "text": att.text,
        "model": att.model,
        "title": att.title,
        "done": att.done,
        "action": att.action,
        "output": "show",
    }
