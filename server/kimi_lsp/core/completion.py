"""Inline completion (ghost text): the prompt for a continuation at the cursor, cleaning the reply into text worth
showing, and the cache that answers repeated and typed-through requests with no network call. Pure functions.

Moonshot has no fill-in-the-middle endpoint; its chat API's partial mode continues an assistant message, so the
current line's text before the cursor is sent as that message and the reply is what follows it. What repeats from
one keystroke to the next comes first in the prompt (the system prompt, other open files, the code after the
cursor, the code before it), so Moonshot's prefix cache covers all but the last few characters.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

from kimi_lsp.core.edits import strip_fences
from kimi_lsp.core.prompts import fence

SYSTEM = (
    "You are Kimi, the code completion engine of the user's editor. Continue the code exactly at the cursor: reply "
    "with only the code that goes there (the rest of the statement or block), no explanation and no code fences, "
    "keeping the file's indentation and style, and never repeating code that is already after the cursor."
)
MAX_BEFORE = 12_000  # characters of code before the cursor sent at most (about 3,000 tokens)
MAX_AFTER = 4_000
OTHER_FILES = 3  # other open documents of the same language, a few lines each
OTHER_LINES = 12
TOKENS_PER_LINE = 24  # the reply limit: max_lines of about this many tokens
STOP = ["\n\n\n", "```"]


@dataclass(frozen=True)
class Cursor:
    """What a completion request knows about the cursor's document."""

    path: str
    language: str
    before: str  # the code before the cursor (budgeted), ending with the current line's text before the cursor
    after: str  # the code after the cursor (budgeted), starting with the rest of the current line
    others: tuple[tuple[str, str], ...] = ()  # (path, a few lines) of other open files of the same language

    @property
    def line_prefix(self) -> str:
        return self.before.rsplit("\n", 1)[-1]

    @property
    def line_suffix(self) -> str:
        return self.after.split("\n", 1)[0]


def cursor_at(
    text: str,
    offset: int,
    lines_before: int,
    path: str = "",
    language: str = "",
    others: tuple[tuple[str, str], ...] = (),
) -> Cursor:
    """The cursor's context: `lines_before` lines above it and half as many below, within the character budgets."""
    before_start = offset
    for _ in range(lines_before + 1):
        nl = text.rfind("\n", 0, max(0, before_start - 1))
        before_start = nl + 1 if nl >= 0 else 0
        if before_start == 0:
            break
    after_end = offset
    for _ in range(max(1, lines_before // 2)):
        nl = text.find("\n", after_end)
        if nl < 0:
            after_end = len(text)
            break
        after_end = nl + 1
    before = text[max(before_start, offset - MAX_BEFORE) : offset]
    after = text[offset : min(after_end, offset + MAX_AFTER)]
    return Cursor(path, language, before, after, others)


def snippet(text: str, lines: int = OTHER_LINES) -> str:
    """The first lines of another open file (its imports and first definitions: what a completion may call)."""
    return "\n".join(text.split("\n", lines)[:lines])


def messages(c: Cursor) -> list[dict[str, Any]]:
    """System, then the user message (other files, the file, the code after and before the cursor), then the line
    before the cursor as a partial assistant message for the reply to continue (none at a line's start: an empty
    message is not allowed)."""
    parts = []
    for path, text in c.others:
        parts.append(f"Another open file, {path}:\n" + fence(text, c.language))
    parts.append(f"File: {c.path}" + (f" ({c.language})" if c.language else ""))
    if c.after.strip():
        parts.append("The code after the cursor (do not repeat it):\n" + fence(c.after, c.language))
    parts.append("Continue this code from its very end (the cursor):\n" + fence(c.before, c.language))
    out: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
    if c.line_prefix:
        out.append({"role": "assistant", "content": c.line_prefix, "partial": True})
    return out


def reply_limit(max_lines: int) -> int:
    return max(32, max_lines * TOKENS_PER_LINE)


_FENCE_LINE = re.compile(r"^\s*(```|~~~)")


def clean(reply: str, c: Cursor, max_lines: int) -> str:
    """The ghost text a reply gives: no fences, no echo of the line before the cursor, nothing that the text after
    the cursor already has, at most `max_lines` lines, and empty when nothing is worth showing."""
    text = reply.replace("\r\n", "\n")
    if "```" in text or "~~~" in text:
        text = strip_fences(text) if _FENCE_LINE.match(text) else text.split("```", 1)[0]
    prefix = c.line_prefix
    if prefix.strip() and text.startswith(prefix):
        text = text[len(prefix) :]  # the model repeated the line (partial mode should not; some do)
    elif not prefix.strip() and prefix and text.startswith(prefix):
        text = text[len(prefix) :]  # the indentation, repeated
    lines = text.split("\n")[:max_lines]
    text = "\n".join(lines).rstrip()
    text = _without_suffix(text, c.after)
    return text if text.strip() else ""


def _without_suffix(text: str, after: str) -> str:
    """Cut what accepting `text` would duplicate: the rest of the current line at the end of its last line (a
    closing bracket the editor already typed), or whole lines the code after the cursor starts with."""
    rest = after.split("\n", 1)[0]
    if "\n" not in text:
        return text[: -len(rest.strip())].rstrip() if rest.strip() and text.endswith(rest.strip()) else text
    lines = text.split("\n")
    following = [line.strip() for line in after.split("\n")[1:] if line.strip()]
    for k in range(min(len(lines) - 1, len(following)), 0, -1):
        if [line.strip() for line in lines[-k:]] == following[:k]:
            lines = lines[:-k]
            break
    text = "\n".join(lines).rstrip()
    if rest.strip() and text.endswith(rest.strip()):
        text = text[: -len(rest.strip())].rstrip()
    return text


@dataclass
class _Shown:
    before: str
    after: str
    text: str


@dataclass
class CompletionCache:
    """Recent completions by the text around the cursor, and typing through: when the user types the start of a
    completion just shown, the rest of it is the answer."""

    size: int = 256
    recent: int = 8  # completions looked at for typing through
    before_chars: int = 2000
    after_chars: int = 500
    _by_key: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict)
    _shown: list[_Shown] = field(default_factory=list)

    def _key(self, c: Cursor) -> tuple[str, str]:
        return c.before[-self.before_chars :], c.after[: self.after_chars]

    def get(self, c: Cursor) -> Optional[str]:
        key = self._key(c)
        if key in self._by_key:
            self._by_key.move_to_end(key)
            return self._by_key[key]
        before, after = key
        for shown in reversed(self._shown):
            if shown.after != after:
                continue
            for k in range(1, len(shown.text)):
                typed = shown.text[:k]
                if not before.endswith(typed):
                    continue
                if (shown.before + typed)[-self.before_chars :] == before:
                    return shown.text[k:]
        return None

    def put(self, c: Cursor, text: str) -> None:
        key = self._key(c)
        self._by_key[key] = text
        self._by_key.move_to_end(key)
        while len(self._by_key) > self.size:
            self._by_key.popitem(last=False)
        if text:
            self._shown = [*self._shown[-(self.recent - 1) :], _Shown(key[0], key[1], text)]
