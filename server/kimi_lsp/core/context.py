"""Keeping the cached prefix of a file's prompts while the file changes.

Moonshot bills a prompt prefix it saw shortly before at the cache price. Every prompt on a file starts with the
whole file (core.prompts), so an edit at line L used to leave only lines 1..L-1 cached for the next action. Instead,
the next prompts keep sending the version of the file the earlier ones sent (their cached prefix) and add the
changes since as a unified diff after it: the model sees the file as it is now, and the long prefix stays cached.
When the changes grow large, or the cache has surely expired, the current file becomes the new base.
"""

from __future__ import annotations

import difflib
import time
from collections import OrderedDict
from typing import Optional

from kimi_lsp.core.lines import split_lines

BASE_TTL = 240.0  # seconds a base is reused after its last use (Moonshot's cache keeps a prefix a few minutes)
MAX_BASES = 64  # documents remembered (each holds one earlier text of at most kimi.fileContextTokens)
MAX_SHARE = 0.25  # a diff longer than this share of the file, or...
MIN_DIFF = 2000  # ...than this many characters (whichever is larger), makes the current text the new base


def changes_since(base: str, text: str) -> Optional[str]:
    """The changes from `base` to `text` as a unified diff with the current file's line numbers, or None when they
    are too large to be worth sending instead of the file."""
    if base == text:
        return ""
    limit = max(MIN_DIFF, int(len(text) * MAX_SHARE))
    lines = difflib.unified_diff(split_lines(base), split_lines(text), "before", "now", n=1)
    out: list[str] = []
    size = 0
    for line in lines:
        if not line.endswith(("\n", "\r")):
            line += "\n"  # the last line of a file without a final line break
        size += len(line)
        if size > limit:
            return None
        out.append(line)
    return "".join(out)


class ContextBases:
    """Per document (any key: the LSP uri), the text earlier prompts sent as the file, and when it was last sent."""

    def __init__(self, ttl: float = BASE_TTL, size: int = MAX_BASES) -> None:
        self._bases: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._ttl, self._size = ttl, size

    def pick(self, key: str, text: str, now: Optional[float] = None) -> tuple[str, str]:
        """(base, changes) for a prompt on `text`: the earlier base and the diff to `text` when that is worth it,
        else (`text`, "") and `text` becomes the base."""
        now = time.monotonic() if now is None else now
        held = self._bases.get(key)
        base = text
        changes: Optional[str] = ""
        if held is not None and now - held[1] <= self._ttl:
            changes = changes_since(held[0], text)
            if changes is not None:
                base = held[0]
        self._bases[key] = (base, now)
        self._bases.move_to_end(key)
        while len(self._bases) > self._size:
            self._bases.popitem(last=False)
        return base, changes or ""
