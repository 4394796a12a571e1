"""Reading a chat request as the fake does: the text of messages, fenced code, labelled lines, the token estimate."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Optional


def _parts(content: Any) -> tuple[list[str], int]:
    """The text pieces and the number of image parts of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return [content], 0
    texts, images = [], 0
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            images += 1
    return texts, images


def estimate_tokens(messages: Iterable[Any]) -> int:
    """The fake tokenizer: per message, 4 + ceil(characters / 4), plus 1000 per image part."""
    total = 0
    for message in messages:
        texts, images = _parts(message.get("content") if isinstance(message, dict) else None)
        total += 4 + math.ceil(sum(map(len, texts)) / 4) + 1000 * images
    return total


def _text(content: Any) -> str:
    return "\n".join(_parts(content)[0])


# A fence opened with N backticks closes with exactly N (kimi_lsp.prompts lengthens fences around ```).
_FENCE = re.compile(
    r"^(?P<ticks>`{3,})[ \t]*(?P<lang>[^\s`]*)[^\n]*\n(?P<code>.*?)^(?P=ticks)[ \t]*$", re.MULTILINE | re.DOTALL
)


_HASH_COMMENT_LANGS = {"", "python", "py", "python3", "shell", "shellscript", "sh", "bash", "zsh", "fish", "ruby", "rb"}


def _labelled_line(label: str, text: str) -> Optional[str]:
    """The value of the first `Label: value` line in `text`, ignoring fenced code (which may say anything)."""
    match = re.search(rf"^{label}:[ \t]*(.*?)[ \t]*$", _FENCE.sub("", text), re.MULTILINE)
    return match.group(1) if match else None
