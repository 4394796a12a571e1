"""The one place secrets are taken out of text before it leaves the process.

Every exit goes through `redact`: what is sent to the editor (the protocol's writer), every log line (a
logging filter), and every request body sent to the model (prompts and tool results). It removes the live
API keys the server has seen (registered by the key store) and anything shaped like a bearer token or a
Moonshot key, so a key echoed by a hostile endpoint or read from a dotfile never reaches a message,
diagnostic, result, log or prompt.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "[redacted]"
_live: set[str] = set()
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"'\\,;]+")
# Moonshot (and OpenAI-style) secret keys: `sk-` and a long run of key characters.
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")
_MIN_SECRET = 8  # shorter "keys" would redact ordinary words; they are refused by key validation anyway


def register(secret: str | None) -> None:
    """A key the server holds (from the keychain, the environment or the editor): never let it out."""
    if secret and len(secret) >= _MIN_SECRET:
        _live.add(secret)
        stripped = secret.strip()
        if stripped != secret and len(stripped) >= _MIN_SECRET:
            _live.add(stripped)


def forget_all() -> None:
    """For tests."""
    _live.clear()


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _live:
        if secret in text:
            text = text.replace(secret, MASK)
    if "sk-" in text:
        text = _KEY_SHAPED.sub(MASK, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_obj(value: Any) -> Any:
    """`redact` over every string inside JSON-like data (dict keys stay as they are)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's final text (message, arguments and traceback) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw message
            message = str(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-]*\Z")
_HOLD_AT_MOST = 400


class StreamGuard:
    """Redaction for text that arrives in pieces (a streamed answer): a key split across two deltas would pass
    `redact` piece by piece, so the tail that may be the start of a secret is held back until it is complete."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """What may be shown now of everything fed so far (redacted)."""
        raw = self._held + text
        cut = _unfinished_secret(raw)
        if len(raw) - cut > _HOLD_AT_MOST:  # a run of key characters that never ends is no key to wait for
            cut = len(raw)
        self._held = raw[cut:]
        return redact(raw[:cut])

    def flush(self) -> str:
        held, self._held = self._held, ""
        return redact(held)


def _unfinished_secret(text: str) -> int:
    """Where a possibly unfinished secret starts at the end of `text` (len(text) when there is none)."""
    cut = len(text)
    window = text[-200:]
    base = len(text) - len(window)
    for start in (window.rfind("sk-"), window.lower().rfind("bearer")):
        if start >= 0 and _KEY_CHARS.match(window, start + (3 if window[start] == "s" else 6)) is not None:
            rest = window[start:]
            if rest.lower().startswith("bearer"):
                rest = rest[6:].lstrip()
                if not _KEY_CHARS.fullmatch(rest):
                    continue
            cut = min(cut, base + start)
    for partial in ("s", "sk", "b", "be", "bea", "bear", "beare"):  # a marker cut in two
        if window.lower().endswith(partial) and (
            len(window) == len(partial) or not window[-len(partial) - 1].isalnum()
        ):
            cut = min(cut, len(text) - len(partial))
    for secret in _live:  # a live key's prefix at the very end
        for n in range(min(len(secret), len(window)), 3, -1):
            if window.endswith(secret[:n]):
                cut = min(cut, len(text) - n)
                break
    return cut
