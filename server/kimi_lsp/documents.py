"""Open documents that take an incremental edit in time proportional to the lines it touches.

pygls' `TextDocument` keeps one string: every incremental `didChange` splits the whole text into lines and
writes all of them into a new string, and `lines` splits it again on every call. On a 5 MB document that is
tens of milliseconds per keystroke. `FastTextDocument` keeps the text as a list of lines (each with its line
break, exactly what `str.splitlines(keepends=True)` gives), replaces only the lines an edit touches, and joins
`source` lazily, once per version, only when somebody reads it.

Wiring: pygls builds its `Workspace` while answering `initialize`, just before it calls the server's own
INITIALIZE handler, so that handler calls `install(ls)` first thing. Nothing else changes: the documents
are still `pygls.workspace.TextDocument`s (a subclass) with the same `source`, `lines`, `version`,
`offset_at_position`... (`lines` is a read-only snapshot sequence, like pygls' tuple, made without copying).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, Optional

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import ServerTextPosition

# Every character `str.splitlines` ends a line at; only "\r\n" is two characters long.
_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


class Lines(Sequence):
    """A read-only snapshot of a document's lines, made in O(1): it shares the document's list, and the
    document copies that list before its next edit if a snapshot is still alive (copy-on-write)."""

    __slots__ = ("_lines", "__weakref__")

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return tuple(self._lines[index])
        return self._lines[index]

    def __iter__(self):
        return iter(self._lines)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Lines, tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._lines))

    def __repr__(self) -> str:
        return f"Lines({len(self._lines)} lines)"


class FastTextDocument(TextDocument):
    def __init__(self, uri: str, source: Optional[str] = None, version: Optional[int] = None,
                 language_id: Optional[str] = None, local: bool = True,
                 sync_kind: types.TextDocumentSyncKind = types.TextDocumentSyncKind.Incremental,
                 position_codec: Any = None) -> None:
        super().__init__(uri, source=source, version=version, language_id=language_id, local=local,
                         sync_kind=sync_kind, position_codec=position_codec)
        # None: not held in memory (pygls reads such a document from disk on demand).
        self._lines: Optional[list[str]] = None if source is None else source.splitlines(True)
        self._view: Optional[weakref.ref] = None  # the last Lines snapshot handed out
        self._offsets: Optional[list[int]] = None

    # -- reading -------------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        if self._lines is None:
            return super().source
        if self._source is None:
            self._source = "".join(self._lines)
        return self._source

    @property
    def lines(self) -> Sequence[str]:
        if self._lines is None:
            return super().lines
        view = self._view() if self._view is not None else None
        if view is None:
            view = Lines(self._lines)
            self._view = weakref.ref(view)
        return view

    def offset_at_server_position(self, server_position: ServerTextPosition) -> int:
        if self._lines is None:
            return super().offset_at_server_position(server_position)
        if self._offsets is None:
            self._offsets = [0, *accumulate(map(len, self._lines))]
        row = min(max(server_position.line, 0), len(self._lines))
        return self._offsets[row] + server_position.character

    def offset_at_position(self, client_position: types.Position) -> int:
        if self._lines is None:
            return super().offset_at_position(client_position)
        pos = self._position_codec.position_from_client_units(self._lines, client_position)
        return self.offset_at_server_position(pos)

    # -- writing -------------------------------------------------------------------------------------

    def _set_text(self, text: str) -> None:
        self._lines = text.splitlines(True)
        self._source, self._view, self._offsets = text, None, None

    def _apply_full_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        self._set_text(change.text)

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        if self._lines is None:
            self._set_text(super().source)
        if self._view is not None and self._view() is not None:
            self._lines = list(self._lines)  # somebody still holds a snapshot of the old lines: leave it be
        self._view = None
        lines = self._lines
        assert lines is not None
        if not lines:
            self._set_text(change.text)
            return
        rng = self._position_codec.range_from_client_units(lines, change.range)
        start, end = (rng.start.line, rng.start.character), (rng.end.line, rng.end.character)
        first, last = start[0], end[0]
        if last < first:  # an inverted range across lines: pygls leaves the text as it is, and so do we
            return
        seg = lines[first][:start[1]] + change.text + lines[last][end[1]:]
        # Re-split together with the neighbours whose line break the edit can change: a "\r" ending the
        # previous line meets a "\n" at the start, or the edit removed the line break at its end.
        if last + 1 < len(lines) and (not seg or seg[-1] not in _BREAKS
                                      or (seg[-1] == "\r" and lines[last + 1][:1] == "\n")):
            last += 1
            seg += lines[last]
        if first > 0 and seg[:1] == "\n" and lines[first - 1].endswith("\r"):
            first -= 1
            seg = lines[first] + seg
        lines[first:last + 1] = seg.splitlines(True)
        self._source, self._offsets = None, None


class FastWorkspace(Workspace):
    def _create_text_document(self, doc_uri: str, source: Optional[str] = None, version: Optional[int] = None,
                              language_id: Optional[str] = None) -> TextDocument:
        return FastTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                                sync_kind=self._sync_kind, position_codec=self._position_codec)

    @classmethod
    def adopt(cls, ws: Workspace) -> "FastWorkspace":
        """A FastWorkspace with the same root, folders, sync kind and position encoding (and documents)."""
        new = cls(ws.root_uri, ws._sync_kind, list(ws.folders.values()), ws.position_encoding)
        for uri, doc in ws.text_documents.items():
            new._text_documents[uri] = new._create_text_document(
                doc.uri, source=doc.source, version=doc.version, language_id=doc.language_id)
        return new


def install(ls: Any) -> None:
    """Swap the server's workspace for a FastWorkspace; call at the top of the INITIALIZE handler."""
    protocol = ls.protocol
    if not isinstance(protocol._workspace, FastWorkspace):
        protocol._workspace = FastWorkspace.adopt(protocol._workspace)
