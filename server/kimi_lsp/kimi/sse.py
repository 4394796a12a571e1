"""Pure pieces of reading a streamed chat reply: chunk accumulation and `<think>` splitting.

No I/O here, so both are unit-tested table-driven (tests/test_stream.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Routes `<think>…</think>` inside content to reasoning, even when a tag is split across chunks."""

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Returns (kind, text) pieces, kind 'reasoning' or 'content'."""
        self._buf += text
        out: list[tuple[str, str]] = []
        while self._buf:
            tag = CLOSE if self._inside else OPEN
            kind = "reasoning" if self._inside else "content"
            i = self._buf.find(tag)
            if i >= 0:
                if i:
                    out.append((kind, self._buf[:i]))
                self._buf = self._buf[i + len(tag) :]
                self._inside = not self._inside
                continue
            # Keep a possible partial tag at the end for the next chunk.
            keep = _partial_suffix(self._buf, tag)
            emit = self._buf[: len(self._buf) - keep]
            if emit:
                out.append((kind, emit))
            self._buf = self._buf[len(self._buf) - keep :]
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        rest, self._buf = self._buf, ""
        return [("reasoning" if self._inside else "content", rest)] if rest else []


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


@dataclass
class ToolCall:
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: str = ""

    def to_message(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Reply:
    content: str = ""
    reasoning: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[dict[str, Any]] = None
    model: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: bool = False  # saw [DONE]


Emit = Callable[[str, str], None]  # (kind, delta)


class ChunkReader:
    """Folds chat.completion.chunk objects into a Reply, emitting reasoning/content deltas as they arrive.

    Usage is accepted in `choices[0].usage` of the last chunk and in a final `choices: []` chunk.
    """

    def __init__(self, emit: Emit) -> None:
        self.reply = Reply()
        self._emit = emit
        self._think = ThinkSplitter()
        self._calls: dict[int, ToolCall] = {}

    def feed(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            raise ValueError("chunk is not a JSON object")
        if isinstance(chunk.get("usage"), dict):
            self.reply.usage = chunk["usage"]
        if chunk.get("model"):
            self.reply.model = str(chunk["model"])
        choices = chunk.get("choices") or []
        if not choices:
            return
        choice = choices[0] if isinstance(choices[0], dict) else {}
        if isinstance(choice.get("usage"), dict):
            self.reply.usage = choice["usage"]
        if choice.get("finish_reason"):
            self.reply.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict):
            return
        if delta.get("reasoning_content"):
            self._out("reasoning", str(delta["reasoning_content"]))
        if delta.get("content"):
            for kind, text in self._think.feed(str(delta["content"])):
                self._out(kind, text)
        for tc in delta.get("tool_calls") or []:
            self._tool_fragment(tc)

    def finish(self) -> Reply:
        for kind, text in self._think.flush():
            self._out(kind, text)
        self.reply.tool_calls = [self._calls[i] for i in sorted(self._calls)]
        return self.reply

    def _out(self, kind: str, text: str) -> None:
        if kind == "reasoning":
            self.reply.reasoning += text
        else:
            self.reply.content += text
        self._emit(kind, text)

    def _tool_fragment(self, tc: Any) -> None:
        if not isinstance(tc, dict):
            return
        call = self._calls.setdefault(int(tc.get("index", len(self._calls))), ToolCall())
        call.id = tc.get("id") or call.id
        call.type = tc.get("type") or call.type
        fn = tc.get("function") or {}
        call.name = fn.get("name") or call.name
        call.arguments += fn.get("arguments") or ""
