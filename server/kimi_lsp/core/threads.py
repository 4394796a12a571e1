"""Conversations: a request and its follow-ups as a thread that survives a restart.

A thread keeps the messages exactly as they were sent (so a follow-up replays them, and Moonshot's prefix cache
bills them at the cache price) and, beside them, the turns as the user saw them (for listing and export). Threads
are JSON files, one per thread, per workspace, under the user's state directory; they never hold the API key
(every text passes through `redact` before it is written). File I/O here is synchronous: adapters call it in a
worker thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from kimi_lsp.core.prompts import estimate_tokens
from kimi_lsp.redact import redact_obj

MAX_THREADS = 100  # per workspace; the least recently updated beyond it are deleted
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BLOCK = re.compile(
    r"^(?P<ticks>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=ticks)[ \t]*$", re.MULTILINE | re.DOTALL
)
# A block's target as the model names it after the language: ```python lib/util.py:10-20 (1-based, inclusive)
_TARGET = re.compile(r"(?:^|\s)(?:title=)?[\"']?(?P<path>[^\s:\"']+):(?P<start>\d+)-(?P<end>\d+)[\"']?(?:\s|$)")


def state_dir() -> Path:
    """KIMI_LSP_STATE_DIR, else $XDG_STATE_HOME/kimi-lsp, else ~/.local/state/kimi-lsp."""
    if explicit := os.environ.get("KIMI_LSP_STATE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "kimi-lsp"


@dataclass
class Turn:
    question: str
    answer: str = ""
    reasoning: str = ""
    model: str = ""
    references: list[str] = field(default_factory=list)
    note: str = ""  # e.g. that earlier turns were left out to fit the window
    usage: Optional[dict[str, int]] = None
    cost: Optional[dict[str, Any]] = None
    at: float = 0.0


@dataclass
class Thread:
    id: str
    title: str
    model: str
    action: str
    uri: Optional[str] = None
    selection: Optional[dict[str, Any]] = None  # {start, end, text}: where the thread started, to apply code back
    language: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)  # as sent, answers included, for replay
    turns: list[Turn] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "threadId": self.id,
            "title": self.title,
            "model": self.model,
            "uri": self.uri,
            "turns": len(self.turns),
            "updated": self.updated,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "action": self.action, "turns": [asdict(t) for t in self.turns]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thread:
        turns = [Turn(**{k: v for k, v in t.items() if k in Turn.__dataclass_fields__}) for t in data.get("turns", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "turns"}
        return cls(**fields, turns=turns)


def new_thread(title: str, model: str, action: str, **kw: Any) -> Thread:
    now = time.time()
    words = " ".join(title.split())
    return Thread(uuid.uuid4().hex[:12], words[:80] or action, model, action, created=now, updated=now, **kw)


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as stored: image parts become a note (a thread must stay small; a follow-up does not resend them)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
            m = {**m, "content": "\n".join(texts) + (f"\n[{images} image(s) were attached]" if images else "")}
        out.append(m)
    return out


def replay(messages: list[dict[str, Any]], thinking: bool) -> list[dict[str, Any]]:
    """The history as a thinking model must get it: every assistant message whole, with its reasoning_content ("" when
    an earlier model gave none); a model without thinking gets none."""
    out = []
    for m in messages:
        if m.get("role") == "assistant":
            m = dict(m)
            if thinking:
                m["reasoning_content"] = m.get("reasoning_content") or ""
            else:
                m.pop("reasoning_content", None)
        out.append(m)
    return out


def fit_history(messages: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The history within `budget` tokens (the local estimate). The system prompt, the first exchange (the request
    that holds the file, and its answer) and the new question stay; the oldest follow-ups (a question and its answer)
    go first. Returns the messages and how many follow-ups were left out."""
    head, rest = messages[:3], messages[3:]
    dropped = 0
    while len(rest) > 1 and estimate_tokens(head + rest) > budget:
        rest = rest[2:]  # a question and its answer
        dropped += 1
    return head + rest, dropped


def code_blocks(answer: str) -> list[str]:
    return [m.group("code") for m in _BLOCK.finditer(answer)]


def block_target(answer: str, index: int) -> Optional[tuple[str, int, int]]:
    """The file and 1-based lines the `index`-th block says it replaces (after its language), if it names them."""
    blocks = list(_BLOCK.finditer(answer))
    if not 0 <= index < len(blocks):
        return None
    found = _TARGET.search(blocks[index].group("info"))
    if found is None or int(found.group("end")) < int(found.group("start")):
        return None
    return found.group("path"), int(found.group("start")), int(found.group("end"))


class ThreadStore:
    """One workspace's threads on disk (synchronous: call it from a worker thread)."""

    def __init__(self, workspace: str, root: Optional[Path] = None, limit: int = MAX_THREADS) -> None:
        key = hashlib.sha256(workspace.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        self.folder = (root or state_dir()) / "threads" / key
        self.workspace = workspace
        self.limit = limit

    def _path(self, thread_id: str) -> Optional[Path]:
        return self.folder / f"{thread_id}.json" if _ID.match(thread_id) else None

    def save(self, thread: Thread) -> None:
        path = self._path(thread.id)
        if path is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = redact_obj({**asdict(thread), "workspace": self.workspace})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path)  # never a half-written thread
        self.prune()

    def load(self, thread_id: str) -> Optional[Thread]:
        path = self._path(thread_id)
        if path is None or not path.is_file():
            return None
        try:
            return Thread.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def all(self) -> list[Thread]:
        if not self.folder.is_dir():
            return []
        threads = [t for p in self.folder.glob("*.json") if (t := self.load(p.stem)) is not None]
        return sorted(threads, key=lambda t: t.updated, reverse=True)

    def delete(self, thread_id: str) -> bool:
        path = self._path(thread_id)
        if path is None or not path.is_file():
            return False
        path.unlink()
        return True

    def prune(self) -> int:
        files = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.limit :]:
            old.unlink(missing_ok=True)
        return max(0, len(files) - self.limit)


def markdown(thread: Thread) -> str:
    """A thread as a Markdown document (kimi.exportThread)."""
    lines = [f"# {thread.title}", "", f"*{thread.model}*" + (f" · {thread.uri}" if thread.uri else ""), ""]
    for n, turn in enumerate(thread.turns, 1):
        lines += [f"## {n}. {turn.question.splitlines()[0] if turn.question else '(the selection)'}", ""]
        if turn.question and "\n" in turn.question:
            lines += [turn.question, ""]
        if turn.references:
            lines += ["References: " + ", ".join(turn.references), ""]
        if turn.note:
            lines += [f"> {turn.note}", ""]
        lines += [turn.answer, ""]
    return "\n".join(lines).rstrip() + "\n"
