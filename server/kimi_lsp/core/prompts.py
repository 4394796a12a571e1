"""Prompt building: what Kimi is told for each action. Pure functions, unit-tested.

Conventions the fake server relies on too: the task is named on a `Task:` line, the code to work on is the
last fenced block of the user message, an instruction sits on an `Instruction:` line, and code tasks say
"Reply with ONLY the code".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from kimi_lsp.core.images import Image

CODE_RULES = (
    "Reply with ONLY the code that replaces the selected code, in one fenced code block: no explanation before "
    "or after it. Keep the original indentation, style and language. Do not repeat the surrounding context."
)

SYSTEMS = {
    "explain": "You are Kimi, an expert programmer inside the user's code editor. Explain the selected code clearly "
    "and concisely in Markdown: what it does, how, and anything surprising or risky.",
    "ask": "You are Kimi, an expert programmer inside the user's code editor. Answer the user's question in Markdown, "
    "concisely, using the code they selected when it is given.",
    "refactor": "You are Kimi, an expert programmer inside the user's code editor. Refactor the selected code as "
    "instructed (or, without an instruction, to be clearer and more idiomatic) without changing its "
    "behaviour. " + CODE_RULES,
    "fix": "You are Kimi, an expert programmer inside the user's code editor. Fix the problems in the selected code, "
    "using the diagnostics given, with the smallest correct change. " + CODE_RULES,
    "document": "You are Kimi, an expert programmer inside the user's code editor. Add documentation to the selected "
    "code (docstrings or doc comments in the language's usual style) without changing the code itself. " + CODE_RULES,
    "describe-image": "You are Kimi, an expert programmer inside the user's code editor. Describe the attached image: "
    "what it shows, any text in it, and what matters for the code that references it. Markdown.",
    "alt-text": "You are Kimi, inside the user's code editor. Write alt text for the attached image: one plain sentence "
    "of at most 125 characters that says what it shows. Reply with the alt text only, no quotes.",
    "mockup": "You are Kimi, an expert front-end and application programmer inside the user's code editor. Write code "
    "in the document's language that implements the attached mockup or picture, fitting the surrounding "
    "code. Reply with ONLY the code to insert, in one fenced code block: no explanation.",
    "custom-code": "You are Kimi, an expert programmer inside the user's code editor. " + CODE_RULES,
    "custom-show": "You are Kimi, an expert programmer inside the user's code editor. Answer in Markdown.",
}


@dataclass
class PromptInput:
    task: str  # explain, ask, refactor, fix, document, or a custom action id
    selection: str
    language: str = ""
    file: str = ""
    before: str = ""  # context lines above the selection
    after: str = ""  # context lines below
    instruction: str = ""
    diagnostics: list[str] = field(default_factory=list)
    template: Optional[str] = None  # custom action prompt
    images: list[Image] = field(default_factory=list)  # sent as image_url parts
    code_output: bool = False  # custom action that edits


def fence(code: str, language: str = "") -> str:
    ticks = "```"
    while ticks in code:
        ticks += "`"
    return f"{ticks}{language}\n{code.rstrip(chr(10))}\n{ticks}"


def build_messages(p: PromptInput) -> list[dict[str, Any]]:
    messages = _text_messages(p)
    if p.images:
        user = messages[-1]
        user["content"] = [{"type": "text", "text": user["content"]}] + [img.part() for img in p.images]
    return messages


def _text_messages(p: PromptInput) -> list[dict[str, Any]]:
    if p.template is not None:
        system = SYSTEMS["custom-code" if p.code_output else "custom-show"]
        user = _fill(p.template, p)
        if p.selection and "{selection}" not in p.template:
            user += "\n\nSelected code:\n" + fence(p.selection, p.language)
        return [{"role": "system", "content": f"{system}\nTask: {p.task}"}, {"role": "user", "content": user}]

    system = SYSTEMS.get(p.task, SYSTEMS["ask"])
    parts: list[str] = []
    if p.file:
        parts.append(f"File: {p.file}" + (f" ({p.language})" if p.language else ""))
    if p.before.strip():
        parts.append("Context above the selection (do not repeat it):\n" + fence(p.before, p.language))
    if p.after.strip():
        parts.append("Context below the selection (do not repeat it):\n" + fence(p.after, p.language))
    if p.diagnostics:
        parts.append("Diagnostics in the selection:\n" + "\n".join(f"- {d}" for d in p.diagnostics))
    if p.task == "ask":
        parts.append(f"Question: {p.instruction or '(none)'}")
    if p.images:
        parts.append("Attached images: " + ", ".join(img.path for img in p.images))
    if p.task == "mockup":
        parts.append(f"Language: {p.language or 'plain text'}")
    if p.selection:
        parts.append("Selected code:\n" + fence(p.selection, p.language))
    if p.instruction and p.task != "ask":
        parts.append(f"Instruction: {p.instruction}")
    return [
        {"role": "system", "content": f"{system}\nTask: {p.task}"},
        {"role": "user", "content": "\n\n".join(parts) or "(empty)"},
    ]


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
            wide = len(_WIDE.findall(text))
            total += wide + (len(text) - wide + 2) // 3
        total += 4
    return total
