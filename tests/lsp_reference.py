"""An LSP-exact reference for documents and positions, deliberately naive: a line ends after each "\\r\\n", "\\r" or
"\\n" and nowhere else, columns count code units of the negotiated encoding, and a position is clamped the LSP way
(past the end of a line: the line's end before its break; past the last line: the document's end; inside a
character: its start). tests/security/test_documents.py and bench/check_documents.py check the server against it."""

from __future__ import annotations

from lsprotocol import types as lsp


def ref_lines(text: str) -> list[tuple[int, int, int]]:
    """LSP's lines as (start, end of content, end with the break); a text ending in a break has an empty last line."""
    out, start, i = [], 0, 0
    while i < len(text):
        if text[i] in "\r\n":
            brk = 2 if text[i : i + 2] == "\r\n" else 1
            out.append((start, i, i + brk))
            i += brk
            start = i
        else:
            i += 1
    out.append((start, len(text), len(text)))
    return out


def ref_split(text: str) -> list[str]:
    """The lines with their breaks, without the empty last one (what split_lines and str.splitlines give)."""
    return [text[s:e] for s, _, e in ref_lines(text) if e > s]


def units(ch: str, enc: str) -> int:
    if enc == "utf-8":
        return len(ch.encode("utf-8", "surrogatepass"))
    return 2 if enc == "utf-16" and ord(ch) > 0xFFFF else 1


def ref_offset(text: str, line: int, character: int, enc: str) -> int:
    lines = ref_lines(text)
    if line >= len(lines):
        return len(text)
    i, used, (_, content_end, _) = lines[line][0], 0, lines[line]
    while i < content_end and used + units(text[i], enc) <= character:
        used += units(text[i], enc)
        i += 1
    return i


def ref_valid(text: str, pos: lsp.Position, enc: str) -> bool:
    """A position the editor reads exactly as meant: an existing line, a column at a character boundary of it."""
    lines = ref_lines(text)
    if pos.line >= len(lines):
        return False
    s, content_end, _ = lines[pos.line]
    bounds, used = {0}, 0
    for ch in text[s:content_end]:
        used += units(ch, enc)
        bounds.add(used)
    return pos.character in bounds


def ref_apply(text: str, edits: list, enc: str = "utf-16") -> str:
    """Edits applied as LSP says (non-overlapping; inserts at one position keep the array's order)."""
    spans = sorted(
        (
            (
                ref_offset(text, e.range.start.line, e.range.start.character, enc),
                ref_offset(text, e.range.end.line, e.range.end.character, enc),
                e.new_text,
            )
            for e in edits
        ),
        key=lambda span: span[:2],
    )
    for (_, e1, _), (s2, _, _) in zip(spans, spans[1:]):
        assert e1 <= s2, f"overlapping edits {spans}"
    for s, e, new in reversed(spans):
        text = text[:s] + new + text[e:]
    return text
