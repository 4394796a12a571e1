"""Turning a model's reply into the smallest safe set of text edits. Pure functions, unit-tested."""

from __future__ import annotations

import difflib
import re
from typing import Optional

from lsprotocol import types as lsp

_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n`]*\n(.*?)^\1[ \t]*$", re.M | re.S)


def strip_fences(reply: str) -> str:
    """The code inside the first fenced block, or the whole reply when there is none."""
    m = _FENCE.search(reply)
    if m:
        return m.group(2)
    text = reply.strip("\n")
    if text.startswith("```"):  # an unterminated fence: drop the opening line only
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text + "\n" if reply.endswith("\n") and not text.endswith("\n") else text


def fit_to_selection(original: str, new: str) -> str:
    """Keep the selection's trailing-newline shape, so the code after it is not glued on or pushed down."""
    if original.endswith("\n") and not new.endswith("\n"):
        return new + "\n"
    if not original.endswith("\n") and new.endswith("\n"):
        return new[:-1]
    return new


def minimal_edits(original: str, new: str, start: lsp.Position, end: lsp.Position,
                  utf16_len=len) -> list[lsp.TextEdit]:
    """Line-level diff of `original` (the text between start and end) against `new`, as TextEdits.

    Unchanged lines get no edit, so cursors, marks and folds on them stay put. `utf16_len` measures a
    first line's width in the client's position encoding.
    """
    a = original.splitlines(keepends=True)
    b = new.splitlines(keepends=True)

    def pos(i: int) -> lsp.Position:
        if i >= len(a):
            return end
        return lsp.Position(line=start.line + i, character=start.character if i == 0 else 0)

    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        edits.append(lsp.TextEdit(range=lsp.Range(start=pos(i1), end=pos(i2)), new_text="".join(b[j1:j2])))
    return edits


def changed_span(old: str, new: str) -> tuple[int, int, int]:
    """The single region that differs: (start, end in old, end in new), from common prefix and suffix.
    Compared in blocks (documents are large, edits small), then character by character inside one block."""
    limit = min(len(old), len(new))
    start = _common(lambda i, n: old[i:i + n] == new[i:i + n], lambda i: old[i] == new[i], limit)
    lo, ln = len(old), len(new)
    tail = _common(lambda i, n: old[lo - i - n:lo - i] == new[ln - i - n:ln - i],
                   lambda i: old[lo - 1 - i] == new[ln - 1 - i], limit - start)
    return start, lo - tail, ln - tail


def _common(block_equal, char_equal, limit: int, step: int = 4096) -> int:
    i = 0
    while i < limit:
        n = min(step, limit - i)
        if block_equal(i, n):
            i += n
            continue
        while i < limit and char_equal(i):
            i += 1
        break
    return i


def rebase(old: str, new: str, start: int, end: int) -> Optional[tuple[int, int]]:
    """Where the selection [start, end) of `old` is in `new`, if the user's edits left it untouched
    (edits above shift it; edits inside or overlapping it make the model's answer stale: None)."""
    return shift(changed_span(old, new), start, end)


def shift(span: tuple[int, int, int], start: int, end: int) -> Optional[tuple[int, int]]:
    """`rebase` for an already computed `changed_span`."""
    s, old_end, new_end = span
    if s == old_end == new_end:
        return start, end
    if old_end <= start:
        delta = new_end - old_end
        return start + delta, end + delta
    if s >= end:
        return start, end
    return None


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply (start_offset, end_offset, new_text) edits, non-overlapping, to `text` (for the CLI and tests)."""
    for s, e, new in sorted(edits, key=lambda x: x[0], reverse=True):
        text = text[:s] + new + text[e:]
    return text
