"""Tool calls: which the fake makes, and the checks on the tools a request offers."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from kimi_lsp.fake.faults import _invalid
from kimi_lsp.fake.prompt import _FENCE, _labelled_line, _text

# -------------------------------------------------------------------------------------------------- tools

_READ_REQUEST = re.compile(r"\bread[ \t]+[`'\"]?([\w./@-]+)", re.IGNORECASE)  # on one line
KEEP_CALLING_TOOLS = "KEEP_CALLING_TOOLS"  # in the first user message: call read_file every round
WEB_SEARCH = "$web_search"


@dataclass
class _ToolCall:
    id: str
    type: str
    name: str
    arguments: str
    reasoning: str  # what a thinking model says before calling

    def to_message(self, index: int) -> dict:
        return {
            "index": index,
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _first_user_text(messages: list[dict]) -> str:
    return next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")


def _tool_results(messages: list[dict]) -> list[dict]:
    """The tool messages after the last user message: this turn's results."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]


def _requested_reads(text: str) -> list[str]:
    """The paths of `read <path>` phrases, in order (a sentence's final dot is not part of the path)."""
    return [path.rstrip(".") or path for path in _READ_REQUEST.findall(text)]


def _offered_type(tools: list[dict], name: str) -> Optional[str]:
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, dict) and function.get("name") == name:
            return str(tool.get("type") or "function")
    return None


def _next_tool_call(messages: list[dict], tools: list[dict], tool_choice: Optional[str]) -> Optional[_ToolCall]:
    """The tool call the fake makes now, or None to answer with content.

    Only tools the request offers are called, only with `tool_choice` absent or "auto". In the first user
    message: `KEEP_CALLING_TOOLS` calls read_file every round (the first requested path, else README.md); else
    each `read <path>` gets one read_file call, one a round, while the results after the last user message are
    fewer than the paths; else `web search` (with `$web_search` offered, before any result) calls `$web_search`
    with the first 40 characters of that message. Ids are `<name>:<n>`, n counting the history's tool calls.
    """
    if not tools or tool_choice == "none":
        return None
    user0 = _FENCE.sub("", _first_user_text(messages))  # the file or selection sent as context may say anything
    paths = _requested_reads(user0)
    done = len(_tool_results(messages))
    number = sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")

    def read(path: str) -> _ToolCall:
        arguments = json.dumps({"path": path, "startLine": 1, "endLine": 200}, ensure_ascii=False)
        return _ToolCall(
            f"read_file:{number}", read_type or "function", "read_file", arguments, f"I should read {path}."
        )

    read_type = _offered_type(tools, "read_file")
    if read_type and KEEP_CALLING_TOOLS in user0:
        return read(paths[0] if paths else "README.md")
    if read_type and done < len(paths):
        return read(paths[done])
    if "web search" in user0.lower() and _offered_type(tools, WEB_SEARCH) == "builtin_function" and not done:
        query = (_labelled_line("Question", user0) or user0)[:40]
        return _ToolCall(
            f"{WEB_SEARCH}:{number}",
            "builtin_function",
            WEB_SEARCH,
            json.dumps({"query": query}, ensure_ascii=False),
            f"I should search the web for {query}.",
        )
    return None


def _tool_results_content(messages: list[dict]) -> str:
    """One line per tool result of this turn, in order.

    `**fake-kimi** read <path>: <first non-empty line, stripped, at most 80 characters>`, or for a result that
    starts with "error"/"Error" or is a JSON object with an "error" key: `**fake-kimi** could not read <path>:
    <the error's first line, at most 120 characters>`; for `$web_search`: `**fake-kimi** searched the web for:
    <query>`. <path> comes from the matching call's arguments (a call without one shows `<name> <arguments>`).
    """
    calls = {
        call.get("id"): call
        for m in messages
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or []
        if isinstance(call, dict)
    }
    lines = []
    for result in _tool_results(messages):
        function = calls.get(result.get("tool_call_id"), {}).get("function") or {}
        name, raw = str(function.get("name", "")), function.get("arguments")
        arguments = _json_value(raw) if isinstance(raw, str) else None
        arguments = arguments if isinstance(arguments, dict) else {}
        content = _text(result.get("content"))
        value = _json_value(content)
        if name == WEB_SEARCH:
            query = (value if isinstance(value, dict) and "query" in value else arguments).get("query", "")
            lines.append(f"**fake-kimi** searched the web for: {query}")
            continue
        target = str(arguments.get("path") or f"{name} {raw or ''}".strip())
        if isinstance(value, dict) and "error" in value:
            error = value["error"] if isinstance(value["error"], str) else json.dumps(value["error"])
            lines.append(f"**fake-kimi** could not read {target}: {_first_line(error)[:120]}")
        elif content.startswith(("error", "Error")):
            lines.append(f"**fake-kimi** could not read {target}: {_first_line(content)[:120]}")
        else:
            lines.append(f"**fake-kimi** read {target}: {_first_line(_drop_header(content, target))[:80]}")
    return "\n".join(lines)


def _drop_header(content: str, path: str) -> str:
    """A tool result may open with a line naming the file (kimi-lsp's `path (lines a-b of n)`): the answer
    should quote the file itself, so that line is skipped."""
    first, _, rest = content.partition("\n")
    return rest if rest and first.startswith(path.strip("./")) else content


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _json_value(text: str) -> Any:
    with contextlib.suppress(ValueError):
        return json.loads(text)
    return None


def _check_tools(tools: Any, messages: list[dict]) -> list[dict]:
    """The offered tools, and the tool-call pairing rules: every tool message answers exactly one call of an
    earlier assistant message, and every call gets its answer."""
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise _invalid("Invalid request: tools must be an array")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (
            isinstance(function, dict)
            and tool.get("type") in ("function", "builtin_function")
            and isinstance(function.get("name"), str)
            and function["name"]
        ):
            raise _invalid(
                f"Invalid request: invalid tool at index {index}: expected "
                '{"type": "function", "function": {"name": ..., "parameters": ...}}'
            )
    waiting: dict[str, int] = {}  # call id -> position of the assistant message that made it
    answered: set[str] = set()
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and message.get("tool_calls") is not None:
            calls = message["tool_calls"]
            if not isinstance(calls, list):
                raise _invalid(f"Invalid request: tool_calls of the message at position {index} must be an array")
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(call, dict)
                    or not isinstance(call.get("id"), str)
                    or not call["id"]
                    or not isinstance(function, dict)
                    or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments", ""), str)
                ):
                    raise _invalid(f"Invalid request: invalid tool call in the message at position {index}")
                waiting[call["id"]] = index
                answered.discard(call["id"])
        elif message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _invalid(
                    f"Invalid request: the message at position {index} with role 'tool' must have a tool_call_id"
                )
            if call_id in answered:
                raise _invalid(
                    f"Invalid request: tool_call_id {call_id} of the message at position {index} "
                    "answers a tool call that already has a tool message"
                )
            if call_id not in waiting:
                raise _invalid(
                    f"Invalid request: tool_call_id {call_id} of the message at position {index} "
                    "is not found in the tool calls of a preceding assistant message"
                )
            del waiting[call_id]
            answered.add(call_id)
    if waiting:
        call_id, index = min(waiting.items(), key=lambda item: item[1])
        raise _invalid(
            f"Invalid request: tool call {call_id} of the assistant message at position {index} "
            "has no tool message answering it"
        )
    return tools
