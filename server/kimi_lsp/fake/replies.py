"""Deterministic replies, derived from the prompt conventions of `kimi_lsp.core.prompts`, and the token estimate."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Optional

from kimi_lsp.fake.prompt import _FENCE, _HASH_COMMENT_LANGS, _labelled_line, _text
from kimi_lsp.fake.tools import _tool_results, _tool_results_content
from kimi_lsp.fake.vision import _images, _vision_content

# ----------------------------------------------------------------------------------------- token estimate


# ------------------------------------------------------------------------------------ deterministic replies

_RENAME = re.compile(r"rename\s+[`'\"]?(\w+)[`'\"]?\s+to\s+[`'\"]?(\w+)", re.IGNORECASE)
THINK_TAGS = "<think>fake hidden reasoning</think>"
CODE_ONLY = "ONLY the code"  # how code tasks say they want code back


def _comment_prefix(lang: str) -> str:
    lang = lang.lower()
    if lang in _HASH_COMMENT_LANGS:
        return "# "
    return "-- " if lang == "lua" else "// "


def _transform_code(code: str, lang: str, task: str, instruction: str) -> str:
    """The edit a code task gets; the code's own lines stay byte-identical unless the edit targets them."""
    comment = _comment_prefix(lang)
    if rename := _RENAME.search(instruction):
        return re.sub(rf"\b{re.escape(rename.group(1))}\b", rename.group(2), code)
    if "uppercase" in instruction.lower():
        return code.upper()
    if task == "document":
        first = code.split("\n", 1)[0]
        indent = first[: len(first) - len(first.lstrip(" \t"))]
        return f"{indent}{comment}Documented by fake-kimi.\n{code}"
    if task == "fix":
        return re.sub(r"\bBUG\b", "FIXED", code)
    return f"{code}\n{comment}refactored by fake-kimi"


def fake_content(model: str, messages: list[dict]) -> str:
    """The deterministic assistant content for a request (see the module docstring for the conventions).

    Precedence: image parts anywhere in the request give the vision reply (`_vision_content`); else tool results
    after the last user message give one line per result (`_tool_results_content`), except for code tasks,
    which always get their code; else the reply for the last user message, as without tools or images.

    Two prompt layouts are read: the task and its rules in the system prompt, or (one system prompt for every
    action) in the user message, after the file and before the selection; the user's `Task:` line wins.
    """
    if messages and messages[-1].get("role") == "assistant" and messages[-1].get("partial"):
        return fake_completion(messages)
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    task = (_labelled_line("Task", user) or _labelled_line("Task", system) or "").lower()
    # Outside fenced code only: the file or the selection may say anything.
    code_task = CODE_ONLY in system or CODE_ONLY in _FENCE.sub("", user)
    if images := _images(messages):
        return _vision_content(task, user, images)
    if _tool_results(messages) and not code_task:
        return _tool_results_content(messages)
    blocks = list(_FENCE.finditer(user))
    if not blocks and (earlier := _last_assistant_code(messages)):
        blocks = earlier  # a follow-up ("revise your code above"): the code the last answer gave is worked on
    if not blocks:  # a question with no code: answer the question, wherever the prompt put it
        return f"**fake-kimi** answers: {(_labelled_line('Question', user) or user)[:80]}"
    lang = blocks[-1].group("lang")
    code = blocks[-1].group("code").removesuffix("\n")  # the newline before the closing fence
    instruction = _labelled_line("Instruction", user) or ""
    if code_task:
        edited = _next_edit(code, user) if task == "next-edit" else _transform_code(code, lang, task, instruction)
        ticks = "```"
        while ticks in edited:  # as a careful model would, and as kimi_lsp.prompts fences code
            ticks += "`"
        return f"{ticks}{lang}\n{edited}\n{ticks}"
    lines = code.splitlines()
    first = lines[0].strip()[:60] if lines else ""
    reply = (
        f"**fake-kimi** explains {len(lines)} lines of {lang or 'text'} code (model {model}).\n\n"
        f"The first line is `{first}`.\n\n"
    )
    return reply + (f"Instruction: {instruction}" if instruction else "")


_EDIT_LINE = re.compile(r'^- line \d+: ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*")$', re.MULTILINE)


def _next_edit(code: str, user: str) -> str:
    """kimi.nextEdit: the user's last edit, if it renamed a word, made everywhere in the window; else no change."""
    edits = _EDIT_LINE.findall(_FENCE.sub("", user))
    if not edits:
        return code
    with contextlib.suppress(ValueError):
        old, new = (json.loads(x) for x in edits[-1])
        if re.fullmatch(r"\w+", old) and re.fullmatch(r"\w+", new):
            return re.sub(rf"\b{re.escape(old)}\b", new, code)
    return code


_COMPLETION = re.compile(r'fake-completion: ("(?:[^"\\]|\\.)*")')
DEFAULT_COMPLETION = "completed_by_fake_kimi()"


def fake_completion(messages: list[dict]) -> str:
    """A partial-mode continuation (what follows the last, partial assistant message, never repeating it): the JSON
    string after `fake-completion: ` where the prompt has one (a comment in the file, so tests know the exact ghost
    text), else DEFAULT_COMPLETION."""
    for m in messages:
        if m.get("role") == "user" and (found := _COMPLETION.search(_text(m.get("content")))):
            with contextlib.suppress(ValueError):
                return str(json.loads(found.group(1)))
    return DEFAULT_COMPLETION


def _last_assistant_code(messages: list[dict]) -> list[re.Match[str]]:
    """The fenced blocks of the assistant's last answer before the last user message (a refinement)."""
    seen_user = False
    for m in reversed(messages):
        if m.get("role") == "user":
            if seen_user:
                return []
            seen_user = True
        elif m.get("role") == "assistant" and seen_user and not m.get("tool_calls"):
            return list(_FENCE.finditer(_text(m.get("content"))))
    return []


def fake_reasoning(model: str) -> str:
    return f"Thinking about the request for {model}. " * 3


def _apply_budget(reasoning: str, content: str, max_tokens: Optional[int]) -> tuple[str, str, str]:
    """Cut a reply to max_tokens (4 characters a token); reasoning is spent first, as on thinking models."""
    if max_tokens is None:
        return reasoning, content, "stop"
    budget = max_tokens * 4
    if len(reasoning) >= budget:
        return reasoning[:budget], "", "length"
    room = budget - len(reasoning)
    if len(content) > room:
        return reasoning, content[:room], "length"
    return reasoning, content, "stop"
