"""Offsets into a document's text <-> LSP positions in the client's encoding, and URIs <-> paths. Everything in
core/ works in offsets; the editor adapter converts here."""

from __future__ import annotations

from typing import Any, Optional

from lsprotocol import types as lsp

from kimi_lsp.core.edits import Edit


def fs_path(uri: Optional[str]) -> Optional[str]:
    from pygls.uris import to_fs_path

    return to_fs_path(uri) if uri else None


def position_at(doc: Any, offset: int) -> lsp.Position:
    """The position of an offset into `doc.source`, in the client's encoding (documents.FastTextDocument clamps
    it to a place the editor reads as meant)."""
    return doc.position_to_client_units(doc.server_position_at_offset(offset))


_MAX_UINT = 2**31 - 1  # LSP's uinteger


def clamp(doc: Any, pos: Any) -> lsp.Position:
    """`pos` (anything with `line` and `character`) inside the document, in the client's position encoding
    (documents.LspPositionCodec): past the end of a line is its end (Neovim ends a line-wise selection at
    len(line) + 1), past the last line the document's end, inside a character its start."""
    # Huge numbers are past the end too (and would not fit an lsp.Position).
    at = lsp.Position(line=min(pos.line, len(doc.lines)), character=min(pos.character, _MAX_UINT))
    return doc.position_to_client_units(doc.position_from_client_units(at))


def offset_at(doc: Any, pos: Any) -> int:
    """The offset into `doc.source` of a position, clamped to the document first."""
    return int(doc.offset_at_position(clamp(doc, pos)))


def line_span(doc: Any, first: int, last: int) -> tuple[int, int]:
    """The offsets of lines first..last-1 (0-based) of `doc`, their line breaks included; to the document's end
    when `last` is past its last line."""
    start = doc.offset_at_position(lsp.Position(line=first, character=0))
    end = doc.offset_at_position(lsp.Position(line=last, character=0)) if last < len(doc.lines) else len(doc.source)
    return start, end


def range_at(doc: Any, start: int, end: int) -> lsp.Range:
    return lsp.Range(start=position_at(doc, start), end=position_at(doc, end))


def text_edits(doc: Any, edits: list[Edit]) -> list[lsp.TextEdit]:
    """Offset edits (core.edits.Edit) as LSP text edits on `doc`."""
    return [lsp.TextEdit(range=range_at(doc, e.start, e.end), new_text=e.text) for e in edits]


def range_json(rng: Optional[lsp.Range]) -> Optional[dict[str, Any]]:
    if rng is None:
        return None
    return {
        "start": {"line": rng.start.line, "character": rng.start.character},
        "end": {"line": rng.end.line, "character": rng.end.character},
    }
