"""Where a result goes: one placement rule per output kind, in offsets into the document's text. The editor
(lsp/features/results.py) and the terminal (cli.py) both place results with `place`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kimi_lsp.core.comments import as_comment
from kimi_lsp.core.edits import Edit, minimal_edits
from kimi_lsp.core.images import alt_text_edit, image_ref
from kimi_lsp.core.lines import break_len, line_end, line_start

if TYPE_CHECKING:
    from kimi_lsp.core.pipeline import Job

# The output kinds an action declares (ActionSpec.output).
SHOW, REPLACE, INSERT_BEFORE, INSERT_AFTER, COMMENT, ALT_TEXT = (
    "show",
    "replace",
    "insertBefore",
    "insertAfter",
    "comment",
    "altText",
)
OUTPUT_KINDS = (SHOW, REPLACE, INSERT_BEFORE, INSERT_AFTER, COMMENT, ALT_TEXT)


def place(job: Job, code: str) -> list[Edit]:
    """The edits that put an action's result (`Outcome.new_code`) into `job.text`; none for `show`."""
    output, text, start, end = job.action.output, job.text, job.start, job.end
    if output == REPLACE:
        return minimal_edits(job.selection, code, start)
    if output == COMMENT:
        at = line_start(text, start)
        line = text[at : line_end(text, at)]
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        return [Edit(at, at, as_comment(code, job.language, indent, job.width))]
    if output == ALT_TEXT:
        ref = image_ref(job.selection, "alt-text")
        if ref is None:
            return []
        s, e, alt = alt_text_edit(ref, code)
        return [Edit(start + s, start + e, alt)]
    if output == INSERT_BEFORE:
        at = line_start(text, start)
        return [Edit(at, at, code if code.endswith("\n") else code + "\n")]
    if output == INSERT_AFTER:
        at, pre = _after(text, start, end)
        return [Edit(at, at, pre + code if pre else (code if code.endswith("\n") else code + "\n"))]
    return []


def _after(text: str, start: int, end: int) -> tuple[int, str]:
    """Where an insertAfter result goes (a line start, or the document's end) and the line break it needs first."""
    if end > start and line_start(text, end) == end:  # the selection ends with its last line's break
        return end, ""
    at = line_end(text, end)
    if at < len(text) or not text or break_len(text[-2:]):
        return at, ""
    return at, "\n"
