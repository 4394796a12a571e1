"""References in a question: `#file:path[:START-END]`, `#selection`, `#diagnostics`, `#symbol:name`.

Each is read through the tools' sandbox (the same refusals: outside the workspace, secrets, `.gitignore`d files,
`toolDeny`), counted against a token budget, and sent with the question; what was refused is said, not sent.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kimi_lsp.core.prompts import fence, text_tokens
from kimi_lsp.core.tools import ToolBox
from kimi_lsp.kimi.sse import ToolCall

if TYPE_CHECKING:
    from kimi_lsp.core.tools import Sandbox

REFERENCE = re.compile(
    r"(?<![\w#])#(?:file:(?P<path>[^\s:,;]+)(?::(?P<start>\d+)-(?P<end>\d+))?|(?P<word>selection|diagnostics)\b"
    r"|symbol:(?P<symbol>[A-Za-z_$][\w$.]*))"
)
SYMBOL_WINDOW = 40  # lines read from a symbol's definition
READ_TIMEOUT = 10.0


@dataclass
class Reference:
    token: str  # as written in the question
    label: str  # as listed in the answer's header, e.g. "lib/util.py:1-40"
    text: str  # what the model gets (an error line when refused)
    ok: bool
    tokens: int = 0


async def resolve(
    question: str,
    sandbox: Sandbox,
    *,
    selection: str = "",
    diagnostics: list[str] | None = None,
    budget: int = 50_000,
) -> list[Reference]:
    """The references `question` names, in order, each once; the ones past `budget` tokens are refused."""
    tools = ToolBox(sandbox)
    out: list[Reference] = []
    seen: set[str] = set()
    deadline = time.monotonic() + READ_TIMEOUT
    for m in REFERENCE.finditer(question):
        token = m.group(0)
        if token in seen:
            continue
        seen.add(token)
        if m.group("word") == "selection":
            ref = Reference(token, "#selection", fence(selection) if selection else "(nothing is selected)", True)
        elif m.group("word") == "diagnostics":
            listed = "\n".join(f"- {d}" for d in diagnostics or []) or "(no problems reported)"
            ref = Reference(token, "#diagnostics", listed, True)
        elif m.group("symbol"):
            ref = await _symbol(tools, token, m.group("symbol"), deadline)
        else:
            ref = await _file(tools, token, m.group("path"), m.group("start"), m.group("end"), deadline)
        ref.tokens = text_tokens(ref.text)
        if ref.ok and ref.tokens > budget:
            ref = Reference(token, ref.label, f"error: {ref.label} is too large to send ({ref.tokens:,} tokens)", False)
            ref.tokens = text_tokens(ref.text)
        budget -= ref.tokens
        out.append(ref)
    return out


async def _read(tools: ToolBox, name: str, args: dict[str, Any], deadline: float) -> str:
    return await tools.run(ToolCall(f"{name}:ref", "function", name, json.dumps(args)), deadline)


async def _file(
    tools: ToolBox, token: str, path: str, start: str | None, end: str | None, deadline: float
) -> Reference:
    args: dict[str, Any] = {"path": path}
    if start and end:
        args.update(startLine=int(start), endLine=int(end))
    text = await _read(tools, "read_file", args, deadline)
    if text.startswith("error"):
        return Reference(token, path, text, False)
    head = text.split("\n", 1)[0]  # "path (lines a-b of n)"
    label = head.split(" (lines ")[0] + (":" + head.split("(lines ")[1].split(" of")[0] if "(lines " in head else "")
    return Reference(token, label, text, True)


async def _symbol(tools: ToolBox, token: str, name: str, deadline: float) -> Reference:
    short = re.escape(name.split(".")[-1])
    pattern = rf"(def|class|function|func|fn|interface|struct|enum|trait|type|const|let|var)\s+{short}\b"
    hits = await _read(tools, "search_text", {"pattern": pattern}, deadline)
    first = hits.split("\n", 1)[0]
    found = re.match(r"^(?P<path>[^:\n]+):(?P<line>\d+): ", first)
    if found is None:
        return Reference(token, f"symbol {name}", f"error: no definition of {name} was found in the workspace", False)
    line = int(found.group("line"))
    text = await _read(
        tools, "read_file", {"path": found.group("path"), "startLine": line, "endLine": line + SYMBOL_WINDOW}, deadline
    )
    ok = not text.startswith("error")
    return Reference(token, f"{name} ({found.group('path')}:{line})", text, ok)


def as_prompt(refs: list[Reference]) -> str:
    """The references as they follow the question in the prompt."""
    if not refs:
        return ""
    parts = ["References the question names:"]
    for r in refs:
        text = r.text if r.text.startswith("```") else fence(r.text)
        parts.append(f"{r.token} ({r.label}):\n{text}" if r.ok else f"{r.token}: {r.text}")
    return "\n\n".join(parts)
