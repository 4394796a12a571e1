"""The LSP line model, for every piece of code that counts lines in a document: a line ends at "\\r\\n", "\\r" or
"\\n" and nowhere else. `str.splitlines` also ends lines at \\v, \\f, \\x1c-\\x1e, U+0085, U+2028 and U+2029,
so a document with a form feed (common in GNU sources) would have more lines for us than for the editor, and
edits would land on the wrong line. Pure functions."""

from __future__ import annotations

import re

# The characters `str.splitlines` breaks at that LSP does not; while a text has none, splitlines is exact.
_EXTRA_BREAKS = re.compile("[\v\f\x1c-\x1e\x85\u2028\u2029]")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def split_lines(text: str, keepends: bool = True) -> list[str]:
    """`text.splitlines(keepends)` with LSP's line breaks: like splitlines, a text ending in a line break has no
    empty last line ("a\\n" -> ["a\\n"]), although LSP counts one there (position (1, 0) is the end of "a\\n")."""
    if not _EXTRA_BREAKS.search(text):
        return text.splitlines(keepends)  # C speed, and the same answer
    lines = _LINE.findall(text)
    return lines if keepends else [line[: len(line) - break_len(line)] for line in lines]


def break_len(line: str) -> int:
    """The length of the line break a line (as split_lines gives it) ends with: 0, 1 or 2."""
    if line.endswith("\r\n"):
        return 2
    return 1 if line.endswith(("\r", "\n")) else 0


def line_start(text: str, i: int) -> int:
    """The offset where the line holding offset `i` starts (`i` is not between the two halves of a \\r\\n)."""
    nl = text.rfind("\n", 0, i)
    return max(nl, text.rfind("\r", nl + 1, i)) + 1  # \r searched only after the last \n: linear, not per line


def line_end(text: str, i: int) -> int:
    """The offset just past the line break of the line holding offset `i` (the text's length on the last line)."""
    nl = text.find("\n", i)
    cr = text.find("\r", i, len(text) if nl < 0 else nl)
    if cr >= 0:
        return cr + 2 if text.startswith("\n", cr + 1) else cr + 1
    return len(text) if nl < 0 else nl + 1


def previous_line_start(text: str, start: int) -> int:
    """The start of the line before the one starting at `start` (> 0)."""
    return line_start(text, start - (2 if text.startswith("\r\n", start - 2) else 1))
