"""Inline explanations: an explain's answer stays attached to its range (hover, code lens) and follows edits;
and `Explain as comment`, which writes the answer above the code as a comment in the document's language."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from lsprotocol import types as lsp

from .edits import changed_span, shift
from .markdown import plain_text, safe_markdown

if TYPE_CHECKING:
    from .server import KimiLanguageServer


@dataclass
class Attachment:
    id: str
    start: int      # code-point offsets into the document's current text
    end: int
    model: str
    title: str
    text: str = ""
    done: bool = False


class Explanations:
    """Attachments per document, moved by edits above them and dropped when their own text changes."""

    def __init__(self) -> None:
        self.by_uri: dict[str, list[Attachment]] = {}
        self._text: dict[str, str] = {}  # the text the offsets refer to
        self._ids = itertools.count(1)

    def attach(self, uri: str, text: str, start: int, end: int, model: str, title: str) -> Attachment:
        # A new explanation of the same range replaces the old one.
        self.by_uri[uri] = [a for a in self.by_uri.get(uri, []) if (a.start, a.end) != (start, end)]
        att = Attachment(str(next(self._ids)), start, end, model, title)
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


# -- explain as comment ------------------------------------------------------------------------------------------

LINE_COMMENTS = {
    "python": "#", "shellscript": "#", "sh": "#", "bash": "#", "zsh": "#", "ruby": "#", "perl": "#", "r": "#",
    "yaml": "#", "toml": "#", "dockerfile": "#", "makefile": "#", "elixir": "#",
    "javascript": "//", "typescript": "//", "javascriptreact": "//", "typescriptreact": "//", "go": "//",
    "rust": "//", "c": "//", "cpp": "//", "java": "//", "csharp": "//", "kotlin": "//", "swift": "//",
    "scala": "//", "dart": "//", "php": "//", "zig": "//",
    "lua": "--", "sql": "--", "haskell": "--",
}
BLOCK_COMMENTS = {"html": ("<!--", "-->"), "xml": ("<!--", "-->"), "markdown": ("<!--", "-->"),
                  "vue": ("<!--", "-->"), "svelte": ("<!--", "-->"), "css": ("/*", " */"), "scss": ("/*", " */"),
                  "less": ("/*", " */")}


def as_comment(text: str, language: str, indent: str, width: int = 100) -> str:
    """The explanation wrapped to `width` columns as a comment block, each line starting with `indent`."""
    width = max(40, width)
    paragraphs = [p for p in text.strip().replace("\r\n", "\n").split("\n\n")]
    lang = (language or "").lower()
    if lang in BLOCK_COMMENTS:
        open_, close = BLOCK_COMMENTS[lang]
        inner = _wrap(paragraphs, width - len(indent) - 2)
        body = [f"{indent}  {line}".rstrip() if line else "" for line in inner]
        return "\n".join([f"{indent}{open_}", *body, f"{indent}{close.strip()}"]) + "\n"
    prefix = LINE_COMMENTS.get(lang, "")
    if not prefix:  # plain text: no comment syntax exists
        return "\n".join(f"{indent}{line}".rstrip() for line in _wrap(paragraphs, width - len(indent))) + "\n"
    lines = _wrap(paragraphs, width - len(indent) - len(prefix) - 1)
    return "\n".join(f"{indent}{prefix} {line}".rstrip() for line in lines) + "\n"


def _wrap(paragraphs: list[str], width: int) -> list[str]:
    out: list[str] = []
    for i, para in enumerate(paragraphs):
        if i:
            out.append("")
        for line in para.split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            bullet = stripped[:2] if stripped[:2] in ("- ", "* ") or stripped[:1].isdigit() and ". " in stripped[:4] else ""
            out.extend(textwrap.wrap(stripped, width=max(20, width), subsequent_indent="  " if bullet else "",
                                     break_long_words=False, break_on_hyphens=False) or [""])
    return out


# -- LSP features --------------------------------------------------------------------------------------------------

def _range(ls: "KimiLanguageServer", doc, a: Attachment) -> lsp.Range:
    def pos(offset: int) -> lsp.Position:
        return doc.position_to_client_units(doc.server_position_at_offset(offset))
    return lsp.Range(start=pos(a.start), end=pos(a.end))


def hover_markdown(a: Attachment) -> str:
    """The hover's Markdown: the model's text can carry images and HTML that an editor would fetch or render."""
    state = "" if a.done else "\n\n_…still writing_"
    text = a.text.strip() or "_waiting for the first words…_"
    return safe_markdown(f"**{a.title}** · `{a.model}`\n\n{text}{state}")


def setup(ls: "KimiLanguageServer") -> None:
    store = ls.explanations

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
        where = _range(ls, doc, a)
        formats = ls.capability("text_document.hover.content_format") or [lsp.MarkupKind.PlainText]
        if lsp.MarkupKind.Markdown in formats:
            value = await asyncio.to_thread(hover_markdown, a)  # a long answer takes a while to parse
            return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=value), range=where)
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
            r = _range(ls, doc, a)
            head = lsp.Range(start=r.start, end=r.start)
            args = {"uri": uri, "id": a.id}
            rerun = {"uri": uri, "range": {"start": {"line": r.start.line, "character": r.start.character},
                                           "end": {"line": r.end.line, "character": r.end.character}}}
            label = "Kimi: explained · hover to read" if a.done else "Kimi: explaining…"
            for title, command, arg in ((label, "kimi.showExplanation", args), ("re-run", "kimi.explain", rerun),
                                        ("dismiss", "kimi.dismissExplanation", args)):
                lenses.append(lsp.CodeLens(range=head, command=lsp.Command(title=title, command=command,
                                                                           arguments=[arg])))
        return lenses

    @ls.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: lsp.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = ls.document(uri)
        if doc is not None and uri in store.by_uri and store.document_changed(uri, doc.source):
            refresh(ls)

    @ls.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: lsp.DidCloseTextDocumentParams) -> None:
        if store.remove(params.text_document.uri):
            refresh(ls)


def refresh(ls: "KimiLanguageServer") -> None:
    """Ask the client to re-request code lenses, where it supports that."""
    if ls.capability("workspace.code_lens.refresh_support"):
        try:
            ls.workspace_code_lens_refresh(None)
        except Exception:
            pass
