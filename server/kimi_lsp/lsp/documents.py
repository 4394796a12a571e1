"""Open documents that take an incremental edit in time proportional to the lines it touches.

pygls' `TextDocument` keeps one string: every incremental `didChange` splits the whole text into lines and
writes all of them into a new string, and `lines` splits it again on every call. On a 5 MB document that is
tens of milliseconds per keystroke. `FastTextDocument` keeps the text as a list of lines (each with its line
break, as `lines.split_lines` gives them), replaces only the lines an edit touches, and joins `source` lazily,
once per version, only when somebody reads it.

Lines are LSP's (they end at \\r\\n, \\r or \\n only; pygls splits with `str.splitlines`, which also breaks at form
feeds and U+2028), and `LspPositionCodec` reads positions the LSP way, clamped: past the end of a line is the
line's end before its break, past the last line the document's end, inside a character (half a surrogate pair,
part of a UTF-8 sequence) that character's start. Every position we hand out is one the editor reads as meant.
Each opening of a document is a new object with a new `generation`, so an edit made for a document that was
closed and reopened meanwhile (versions start again at 1) can be told from one made for the open document.

Wiring: pygls builds its `Workspace` while answering `initialize`, just before it calls the server's own
INITIALIZE handler, so that handler calls `install(ls)` first thing. Nothing else changes: the documents
are still `pygls.workspace.TextDocument`s (a subclass) with the same `source`, `lines`, `version`,
`offset_at_position`... (`lines` is a read-only snapshot sequence, like pygls' tuple, made without copying).
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from itertools import accumulate, count
from typing import Any, Optional

from lsprotocol import types
from pygls.workspace import PositionCodec, TextDocument, Workspace
from pygls.workspace.position_codec import ServerTextPosition, Utf32

from kimi_lsp.core.lines import break_len, split_lines

_GENERATIONS = count(1)


def _end(lines: Sequence[str]) -> ServerTextPosition:
    """The document's end: after a final line break, the start of LSP's empty last line."""
    if not lines:
        return ServerTextPosition(0, 0)
    if break_len(lines[-1]):
        return ServerTextPosition(len(lines), 0)
    return ServerTextPosition(len(lines) - 1, len(lines[-1]))


class LspPositionCodec(PositionCodec):
    """pygls' codec with LSP's rules. Its own counts the line break as columns, moves a column past the end of the
    last line one character back, reads the column between \\r and \\n as after the \\r, and changes the position
    it is given; this one clamps (see the module docstring) and changes nothing."""

    def _column(self, line: str, units: int) -> int:
        content = len(line) - break_len(line)
        if units <= 0:
            return 0
        if isinstance(self.impl, Utf32) or line.isascii():
            return min(units, content)
        unit = self.impl.code_units_for_char
        used = 0
        for i in range(content):
            used += unit(line[i])
            if used > units:  # `units` falls inside character i, or at its start
                return i
        return content

    def position_from_client_units(self, lines: Sequence[str], position: Any) -> ServerTextPosition:
        if position.line >= len(lines):
            return _end(lines)
        return ServerTextPosition(position.line, self._column(lines[position.line], position.character))

    def position_to_client_units(self, lines: Sequence[str], position: Any) -> types.Position:
        if position.line >= len(lines):
            position = _end(lines)
            if position.line == len(lines):
                return types.Position(line=position.line, character=0)
        line = lines[position.line]
        column = min(max(position.character, 0), len(line) - break_len(line))
        return types.Position(line=position.line, character=self.impl.num_units(line[:column]))


class Lines(Sequence):
    """A read-only snapshot of a document's lines, made in O(1): it shares the document's list, and the
    document copies that list before its next edit if a snapshot is still alive (copy-on-write)."""

    __slots__ = ("__weakref__", "_lines")

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: Any) -> Any:
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


RECENT_EDITS = 32  # edits each document remembers
EDIT_CHARS = 400  # of an edit's old and new text kept


class FastTextDocument(TextDocument):
    def __init__(
        self,
        uri: str,
        source: Optional[str] = None,
        version: Optional[int] = None,
        language_id: Optional[str] = None,
        local: bool = True,
        sync_kind: types.TextDocumentSyncKind = types.TextDocumentSyncKind.Incremental,
        position_codec: Any = None,
    ) -> None:
        if not isinstance(position_codec, LspPositionCodec):
            position_codec = LspPositionCodec(getattr(position_codec, "encoding", types.PositionEncodingKind.Utf16))
        super().__init__(
            uri,
            source=source,
            version=version,
            language_id=language_id,
            local=local,
            sync_kind=sync_kind,
            position_codec=position_codec,
        )
        # None: not held in memory (pygls reads such a document from disk on demand).
        self._lines: Optional[list[str]] = None if source is None else split_lines(source)
        self._view: Optional[weakref.ref] = None  # the last Lines snapshot handed out
        self._offsets: Optional[list[int]] = None
        self.generation = next(_GENERATIONS)  # which opening of the document this is
        # The last incremental edits, (number, first line, old text, new text), for kimi.nextEdit: read from the
        # changes themselves, so no feature has to join and diff the whole text on every keystroke.
        self.recent_edits: deque[tuple[int, int, str, str]] = deque(maxlen=RECENT_EDITS)
        self._edits = 0

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
            return tuple(split_lines(super().source))
        view = self._view() if self._view is not None else None
        if view is None:
            view = Lines(self._lines)
            self._view = weakref.ref(view)
        return view

    def _line_offsets(self) -> tuple[Sequence[str], list[int]]:
        if self._lines is None:
            lines: Sequence[str] = self.lines
            return lines, [0, *accumulate(map(len, lines))]
        if self._offsets is None:
            self._offsets = [0, *accumulate(map(len, self._lines))]
        return self._lines, self._offsets

    def offset_at_server_position(self, server_position: ServerTextPosition) -> int:
        lines, offsets = self._line_offsets()
        row = min(max(server_position.line, 0), len(lines))
        if row == len(lines):
            return offsets[row]
        return offsets[row] + min(max(server_position.character, 0), len(lines[row]) - break_len(lines[row]))

    def offset_at_position(self, client_position: types.Position) -> int:
        lines, _ = self._line_offsets()
        return self.offset_at_server_position(self._position_codec.position_from_client_units(lines, client_position))

    def server_position_at_offset(self, offset: int) -> ServerTextPosition:
        """An offset inside a line break (between \\r and \\n) is the line's end, the text's length its end."""
        lines, offsets = self._line_offsets()
        row = bisect_right(offsets, offset) - 1
        if row >= len(lines):
            return _end(lines)
        if row < 0:
            return ServerTextPosition(0, 0)
        return ServerTextPosition(row, min(offset - offsets[row], len(lines[row]) - break_len(lines[row])))

    def position_to_client_units(self, position: ServerTextPosition) -> types.Position:
        lines, _ = self._line_offsets()
        return self._position_codec.position_to_client_units(lines, position)

    def position_from_client_units(self, position: types.Position) -> ServerTextPosition:
        lines, _ = self._line_offsets()
        return self._position_codec.position_from_client_units(lines, position)

    # -- writing -------------------------------------------------------------------------------------

    def _set_text(self, text: str) -> None:
        self._lines = split_lines(text)
        self._source, self._view, self._offsets = text, None, None

    def _apply_full_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        self._set_text(change.text)

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        if self._lines is None:
            self._set_text(super().source)
        if self._view is not None and self._view() is not None and self._lines is not None:
            self._lines = list(self._lines)  # somebody still holds a snapshot of the old lines: leave it be
        self._view = None
        lines = self._lines
        assert lines is not None
        rng = self._position_codec.range_from_client_units(lines, change.range)
        start, end = (rng.start.line, rng.start.character), (rng.end.line, rng.end.character)
        if end < start:  # an inverted range: pygls leaves the text as it is (across lines), and so do we
            return
        first, last = start[0], end[0]
        if last == len(lines):  # to the end of a text ending in a line break: LSP's empty last line
            lines.append("")
        old = (
            lines[first][start[1] : end[1]]
            if first == last
            else lines[first][start[1] :] + "".join(lines[first + 1 : last]) + lines[last][: end[1]]
        )
        if old or change.text:
            self._edits += 1
            self.recent_edits.append((self._edits, first, old[:EDIT_CHARS], change.text[:EDIT_CHARS]))
        seg = lines[first][: start[1]] + change.text + lines[last][end[1] :]
        # Columns never point into a line break, so `seg` keeps the break of its last line; only a lone "\r"
        # ending the previous line can join a "\n" the edit starts with, into one "\r\n".
        if first > 0 and seg[:1] == "\n" and lines[first - 1].endswith("\r"):
            first -= 1
            seg = lines[first] + seg
        lines[first : last + 1] = split_lines(seg)
        self._source, self._offsets = None, None


class FastWorkspace(Workspace):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position_codec = LspPositionCodec(encoding=self._position_encoding)

    def _create_text_document(
        self,
        doc_uri: str,
        source: Optional[str] = None,
        version: Optional[int] = None,
        language_id: Optional[str] = None,
    ) -> TextDocument:
        return FastTextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )

    @classmethod
    def adopt(cls, ws: Workspace) -> FastWorkspace:
        """A FastWorkspace with the same root, folders, sync kind and position encoding (and documents)."""
        new = cls(ws.root_uri, ws._sync_kind, list(ws.folders.values()), ws.position_encoding)
        for uri, doc in ws.text_documents.items():
            new._text_documents[uri] = new._create_text_document(
                doc.uri, source=doc.source, version=doc.version, language_id=doc.language_id
            )
        return new


def install(ls: Any) -> None:
    """Swap the server's workspace for a FastWorkspace; call at the top of the INITIALIZE handler."""
    protocol = ls.protocol
    if not isinstance(protocol._workspace, FastWorkspace):
        protocol._workspace = FastWorkspace.adopt(protocol._workspace)
