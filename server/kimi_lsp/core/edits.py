"""Turning a model's reply into the smallest safe set of text edits. Pure functions, unit-tested."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from itertools import accumulate
from typing import NamedTuple, Optional

from kimi_lsp.core.lines import break_len, split_lines

# The largest reply an edit action applies, in characters (2 MB: about 40,000 lines of code, far beyond any
# selection that fits a model's window). A longer reply is a runaway model: refused whole, never half-applied.
MAX_EDIT_REPLY = 2_000_000


def strip_fences(reply: str) -> str:
    """The code inside the first fenced block, or the whole reply when there is none.

    A block opens with a line of 3+ backticks or tildes at column 0 (an info string after them holds no
    backticks) and closes at the next line that is exactly the same fence (trailing blanks allowed). The first
    block is the one whose opening line comes first. One pass over the lines, in linear time (a regex with a
    backreference took 16 s on 100 KB of unclosed fences): only the first opening line of each fence can open
    the first block, since whatever closes a later one closes that one too."""
    opened: dict[str, tuple[int, int]] = {}  # fence -> (offset of its first opening line, where its code starts)
    best: Optional[tuple[int, int]] = None  # (start, end) of the code of the earliest block closed so far
    pos, n = 0, len(reply)
    while pos < n:
        nl = reply.find("\n", pos)
        stop = n if nl < 0 else nl
        if reply[pos] in "`~":
            line = reply[pos:stop]
            bare = line.rstrip(" \t\r")
            if bare in opened:  # a line that is exactly an open fence closes it
                at, code = opened.pop(bare)
                best = (code, pos)
                # Only blocks opened before this one can still come first; `opened` is in opening order.
                while opened and next(reversed(opened.values()))[0] > at:
                    opened.popitem()
                if not opened:
                    break
            elif best is None:
                run = len(line) - len(line.lstrip(line[0]))
                if run >= 3 and nl >= 0 and "`" not in line[run:]:
                    opened.setdefault(line[:run], (pos, nl + 1))
        pos = stop + 1
    if best is not None:
        return reply[best[0] : best[1]]
    text = reply.strip("\n")
    if text.startswith("```"):  # an unterminated fence: drop the opening line only
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text + "\n" if reply.endswith("\n") and not text.endswith("\n") else text


def clean_code(text: str) -> str:
    """A model's code as it may enter a document: NUL bytes dropped, lone surrogates (which no file encoding
    can hold) replaced by U+FFFD; a surrogate pair is read as the character it encodes."""
    text = text.replace("\x00", "")
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def fit_to_selection(original: str, new: str) -> str:
    """Keep the selection's trailing-line-break shape, so the code after it is not glued on or pushed down."""
    kept, got = break_len(original), break_len(new)
    if kept and not got:
        return new + original[-kept:]
    if got and not kept:
        return new[:-got]
    return new


class Edit(NamedTuple):
    """Replace text[start:end] with `text`: offsets into the document, in code points."""

    start: int
    end: int
    text: str


def minimal_edits(original: str, new: str, start: int = 0) -> list[Edit]:
    """Line-level diff of `original` (the document's text from offset `start`) against `new`, as offset edits.

    Unchanged lines get no edit, so cursors, marks and folds on them stay put.
    """
    a = split_lines(original)
    b = split_lines(new)
    at = list(accumulate((len(line) for line in a), initial=start))  # where each line of `a` starts

    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        edits.append(Edit(at[i1], at[i2], "".join(b[j1:j2])))
    return edits


def changed_span(old: str, new: str) -> tuple[int, int, int]:
    """The single region that differs: (start, end in old, end in new), from common prefix and suffix.
    Compared in blocks (documents are large, edits small), then character by character inside one block."""
    limit = min(len(old), len(new))
    start = _common(lambda i, n: old[i : i + n] == new[i : i + n], lambda i: old[i] == new[i], limit)
    lo, ln = len(old), len(new)
    tail = _common(
        lambda i, n: old[lo - i - n : lo - i] == new[ln - i - n : ln - i],
        lambda i: old[lo - 1 - i] == new[ln - 1 - i],
        limit - start,
    )
    return start, lo - tail, ln - tail


def _common(
    block_equal: Callable[[int, int], bool], char_equal: Callable[[int], bool], limit: int, step: int = 4096
) -> int:
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


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits to `text`."""
    for s, e, new in sorted(edits, key=lambda x: x[0], reverse=True):
        text = text[:s] + new + text[e:]
    return text
