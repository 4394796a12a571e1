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
