"""Prompt building: what Kimi is told for each action. Pure functions, unit-tested.

The layout serves Moonshot's automatic prefix cache (a prompt prefix seen recently is billed at the cache price):
what repeats comes first. Every action sends `[system, user]`:

- one system prompt, the same text for every built-in and custom action;
- the user message: first the part that is the same for every action on the same file (`File: <path>
  (<language>)`, then the whole document in one fenced block when it is small enough, else the context around the
  selection), then what is particular to this action (a `Task:` line, the task's instructions, diagnostics, the
  question, images, and the selected code as the last fenced block, then an `Instruction:` line).

Conventions the fake server relies on too: the task is named on a `Task:` line, the code to work on is the
last fenced block of the user message, an instruction sits on an `Instruction:` line, and code tasks say
"Reply with ONLY the code".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from kimi_lsp.core.lines import line_start, split_lines

if TYPE_CHECKING:
    from kimi_lsp.core.images import Image

CODE_RULES = (
    "Reply with ONLY the code that replaces the selected code, in one fenced code block: no explanation before "
    "or after it. Keep the original indentation, style and language. Do not repeat the surrounding context."
)

SYSTEM = (
    "You are Kimi, an expert programmer inside the user's code editor. The user message gives the file first (the "
    "whole file, or the lines around the selection), then the task (its name, what to do and how to reply, the "
    "selected code, and the user's instruction when there is one). Do what the task asks, in the form it asks for; "
    "the file is context, so do not repeat it unless the task asks for it."
)

TASKS = {
    "explain": "Explain the selected code clearly and concisely in Markdown: what it does, how, and anything "
    "surprising or risky.",
    "ask": "Answer the user's question in Markdown, concisely, using the selected code when it is given. When you "
    "write code that replaces lines of a file other than the selected code, put the file and lines after the "
    "language of its fenced block (```python lib/util.py:10-20), so the editor can apply it there.",
    "refactor": "Refactor the selected code as instructed (or, without an instruction, to be clearer and more "
    "idiomatic) without changing its behaviour. " + CODE_RULES,
    "fix": "Fix the problems in the selected code, using the diagnostics given, with the smallest correct change. "
    + CODE_RULES,
    "document": "Add documentation to the selected code (docstrings or doc comments in the language's usual style) "
    "without changing the code itself. " + CODE_RULES,
    "describe-image": "Describe the attached image: what it shows, any text in it, and what matters for the code "
    "that references it. Markdown.",
    "alt-text": "Write alt text for the attached image: one plain sentence of at most 125 characters that says what "
    "it shows. Reply with the alt text only, no quotes.",
    "mockup": "Write code in the document's language that implements the attached mockup or picture, fitting the "
    "surrounding code. Reply with ONLY the code to insert, in one fenced code block: no explanation.",
    "next-edit": "Make the edit the user is most likely to make next in the selected lines, following on from their "
    "recent edits (listed in the instruction): the same rename elsewhere, the matching change to a call, the next "
    "step of what they are doing. Change nothing else; if no edit follows, reply with the selected code unchanged. "
    + CODE_RULES,
}
CUSTOM_CODE = CODE_RULES  # a custom action that edits: its template, under these rules
CUSTOM_SHOW = "Answer in Markdown."


@dataclass
class PromptInput:
    task: str  # explain, ask, refactor, fix, document, or a custom action id
    selection: str
    language: str = ""
    file: str = ""
    before: str = ""  # context lines above the selection (when the whole document is not sent)
    after: str = ""  # context lines below
    instruction: str = ""
    diagnostics: list[str] = field(default_factory=list)
    template: Optional[str] = None  # custom action prompt
    images: list[Image] = field(default_factory=list)  # sent as image_url parts
    code_output: bool = False  # custom action that edits
    document: Optional[str] = None  # the whole document, sent first instead of before/after
    lines: Optional[tuple[int, int]] = None  # the selection's 1-based first and last lines in the file as it is now
    changes: str = ""  # a unified diff from `document` (what earlier prompts sent) to the file as it is now


def fence(code: str, language: str = "") -> str:
    ticks = "```"
    while ticks in code:
        ticks += "`"
    return f"{ticks}{language}\n{code.rstrip(chr(10))}\n{ticks}"


def build_messages(p: PromptInput) -> list[dict[str, Any]]:
    text = user_text(p)
    content: str | list[dict[str, Any]] = text
    if p.images:  # the text first, then the images
        content = [{"type": "text", "text": text}] + [img.part() for img in p.images]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


def user_text(p: PromptInput) -> str:
    """The user message: the file part (`file_part`), then the task part."""
    parts = [part for part in (file_part(p), _changes_part(p), _task_part(p)) if part]
    return "\n\n".join(parts) or "(empty)"


def file_part(p: PromptInput) -> str:
    """What is the same for every action on the same file (and so cached after the first): the file's name and
    language, and the whole document, or the context window around the selection."""
    parts: list[str] = []
    if p.file:
        parts.append(f"File: {p.file}" + (f" ({p.language})" if p.language else ""))
    if p.document is not None:
        if p.document.strip():
            parts.append(fence(p.document, p.language))
        return "\n".join(parts)
    if p.before.strip():
        parts.append("Context above the selection (do not repeat it):\n" + fence(p.before, p.language))
    if p.after.strip():
        parts.append("Context below the selection (do not repeat it):\n" + fence(p.after, p.language))
    return "\n\n".join(parts)


def _changes_part(p: PromptInput) -> str:
    """After the file part (the cached prefix): what changed in the file since that version was sent."""
    if not p.changes or p.document is None:
        return ""
    return "The file has changed since; this diff turns the file above into the file as it is now:\n" + fence(
        p.changes, "diff"
    )


def _task_part(p: PromptInput) -> str:
    head = f"Task: {p.task}"
    if p.template is not None:
        body = _fill(p.template, p)
        parts = [f"{head}\n{CUSTOM_CODE if p.code_output else CUSTOM_SHOW}", body]
        if p.selection and "{selection}" not in p.template:
            parts.append(_selection(p))
        return "\n\n".join(parts)

    parts = [f"{head}\n{TASKS.get(p.task, TASKS['ask'])}"]
    if p.diagnostics:
        parts.append("Diagnostics in the selection:\n" + "\n".join(f"- {d}" for d in p.diagnostics))
    if p.task == "ask":
        parts.append(f"Question: {p.instruction or '(none)'}")
    if p.images:
        parts.append("Attached images: " + ", ".join(img.path for img in p.images))
    if p.task == "mockup":
        parts.append(f"Language: {p.language or 'plain text'}")
    if p.selection:
        parts.append(_selection(p))
    if p.instruction and p.task != "ask":
        parts.append(f"Instruction: {p.instruction}")
    return "\n\n".join(parts)


def _selection(p: PromptInput) -> str:
    if p.document is not None and p.document.strip() and p.lines is not None:
        first, last = p.lines
        where = f"line {first}" if first == last else f"lines {first}–{last}"
        of = "of the file as it is now, with the changes" if p.changes else "of the file above"
        return f"Selected code ({where} {of}):\n" + fence(p.selection, p.language)
    return "Selected code:\n" + fence(p.selection, p.language)


def selection_lines(text: str, start: int, end: int) -> tuple[int, int]:
    """The 1-based first and last lines (LSP's line breaks) the selection [start, end) covers; a selection that
    ends at the start of a line does not cover that line."""
    first = len(split_lines(text[: line_start(text, start)])) + 1
    if end <= start:
        return first, first
    return first, max(first, len(split_lines(text[:end])))


_PLACEHOLDER = re.compile(r"\{(selection|language|file|diagnostics|instruction)\}")


def _fill(template: str, p: PromptInput) -> str:
    """Only the five documented placeholders are replaced; any other braces in the template stay as they are."""
    values = {
        "selection": fence(p.selection, p.language),
        "language": p.language,
        "file": p.file,
        "diagnostics": "\n".join(p.diagnostics) or "(none)",
        "instruction": p.instruction,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


_WIDE = re.compile("[^\x00-\u2e7f]")  # CJK and other wide scripts: about a token a character


def text_tokens(text: str) -> int:
    """The local estimate for one text (see estimate_tokens)."""
    wide = len(_WIDE.findall(text))
    return wide + (len(text) - wide + 2) // 3


def fits_whole(text: str, limit: int) -> bool:
    """Whether the whole document goes first in the prompt: it has text and its estimate is at most `limit` tokens
    (kimi.fileContextTokens; 0 = never). The estimate is never below a third of the length: long texts are
    turned down without being scanned."""
    if limit <= 0 or not text.strip() or (len(text) + 2) // 3 > limit:
        return False
    return text_tokens(text) <= limit


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A local, deliberately generous estimate (about 3 characters a token; CJK counts a token a character)."""
    total = 0
    for m in messages:
        content = m.get("content")
        texts = (
            [content]
            if isinstance(content, str)
            else [part.get("text", "") for part in content or [] if isinstance(part, dict)]
        )
        if isinstance(content, list):
            total += 1000 * sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
        for text in texts:
            total += text_tokens(text)
        total += 4
    return total
