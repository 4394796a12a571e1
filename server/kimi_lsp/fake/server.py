"""A faithful fake of Moonshot's Kimi HTTP API, served on loopback for every test in the project.

It speaks real HTTP/1.1 (asyncio streams, parsed by h11) so the production httpx client runs unmodified:
keep-alive, chunked SSE, abrupt closes and hang-ups all happen on a real socket. Behaviour follows the
project's wire reference (moonshot-api.md): the same status codes, error bodies, SSE framing and model rules.

Replies are deterministic and derived from the prompt conventions of `kimi_lsp.prompts` (a `Task:` line, the
code in the last fenced block, an `Instruction:` line, "ONLY the code" for code tasks), so an end-to-end test
can predict the exact edit. Vision models answer from the image bytes they received (MIME type, size and a
sha256 prefix), and with `tools` offered the fake calls `read_file` for every `read <path>` of the first user
message, one call a round, then answers from the tool results (see `fake_content` and `_next_tool_call`).
Failures are scripted with `Fault`s, one per chat request, either in-process (`FakeMoonshot.script`) or over
HTTP (`POST /_fake/script`) when the fake runs as a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import http
import json
import logging
import math
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Awaitable, Callable, Iterable, Literal, Optional

import h11

__all__ = [
    "FAULT_KINDS",
    "FakeMoonshot",
    "Fault",
    "Recorded",
    "default_models",
    "estimate_tokens",
    "fake_content",
    "fake_reasoning",
    "main",
]

log = logging.getLogger(__name__)

UsagePlacement = Literal["choice", "final", "both"]
USAGE_PLACEMENTS = ("choice", "final", "both")

MAX_BODY_BYTES = 100 * 1024 * 1024  # Moonshot's documented request limit
HUGE_REPLY_LINES = 10 * 1024  # the "huge" fault replies with this many 1 KiB lines: 10 MiB
HUGE_CHUNK_CHARS = 64 * 1024
DRIP_INTERVAL = 1.0  # seconds between bytes for the "drip" fault
SWITCHABLE_THINKING_MODEL = "kimi-k2.5"
ORG = "org-fake<ak-fake>"  # how real error texts quote the account: never a key

# The gateway's own 404, which is not OpenAI-shaped: clients must cope with a body without "error".
NOT_FOUND_BODY = {"code": 5, "error": "url.not_found", "message": "没找到对象", "scode": "0x5", "status": False}


# --------------------------------------------------------------------------------------------------- faults

ERROR_FAULTS = frozenset({
    "unauthorized", "bad_key", "model_not_found", "context_too_long", "temperature", "content_filter",
    "permission_denied", "rate_limit", "overloaded", "quota", "suspended", "quota_403", "server_error",
})
RAW_FAULTS = frozenset({"no_error_body", "wrong_content_type"})
REPLY_FAULTS = frozenset({"cut", "not_json", "slow_first", "drip", "huge", "reply", "think_tags", "length"})
FAULT_KINDS = ERROR_FAULTS | RAW_FAULTS | REPLY_FAULTS


def _non_negative(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool) and value >= 0


@dataclass
class Fault:
    """One scripted behaviour, consumed by the next /chat/completions request that passes auth."""

    kind: str
    after_chunks: int = 3  # "cut", "not_json": content chunks sent before the fault strikes
    delay: float = 0.0  # "slow_first": seconds before the first token
    content: Optional[str] = None  # "reply": exact assistant content (None: the usual deterministic reply)
    reasoning: Optional[str] = None  # "reply": exact reasoning_content (None: the model's usual; "": none)
    finish_reason: str = "stop"  # "reply"
    wait: Optional[int] = 1  # "rate_limit": seconds in the "try again after" hint; None drops the hint

    def __post_init__(self) -> None:
        # Fail where the test is written (or at POST /_fake/script), not later as a puzzling reply.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not _non_negative(self.after_chunks, int):
            raise ValueError("after_chunks must be a non-negative integer")
        if not _non_negative(self.delay) or not (self.wait is None or _non_negative(self.wait)):
            raise ValueError("delay and wait must be non-negative numbers")
        if not (isinstance(self.finish_reason, str)
                and all(v is None or isinstance(v, str) for v in (self.content, self.reasoning))):
            raise ValueError("content, reasoning and finish_reason must be strings")

    @classmethod
    def from_json(cls, data: Any) -> "Fault":
        """A fault from the control API: a bare kind, or an object with snake_case or camelCase fields."""
        if isinstance(data, str):
            return cls(kind=data)
        if not isinstance(data, dict):
            raise ValueError("a fault must be a kind string or an object")
        names = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            name = re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), key)
            if name not in names:
                raise ValueError(f"unknown fault field {key!r}")
            kwargs[name] = value
        if "kind" not in kwargs:
            raise ValueError("a fault needs a kind")
        return cls(**kwargs)


def _fault_error(fault: Fault, model: str, context_length: int, requested: int) -> _ApiError:
    """The HTTP error a scripted error fault stands for, with the texts seen on the live API."""
    match fault.kind:
        case "unauthorized":
            return _ApiError(401, "invalid_authentication_error", "Invalid Authentication")
        case "bad_key":
            return _ApiError(401, "incorrect_api_key_error", "Incorrect API key provided")
        case "model_not_found":
            return _model_not_found(model)
        case "context_too_long":
            return _context_too_long(context_length, requested)
        case "temperature":
            return _invalid("invalid temperature: only 1 is allowed for this model")
        case "content_filter":
            return _ApiError(400, "content_filter", "The request was rejected because it was considered high risk")
        case "permission_denied":
            return _ApiError(403, "permission_denied_error", "The API you are accessing is not open")
        case "rate_limit":
            hint = "" if fault.wait is None else f", please try again after {fault.wait} seconds"
            return _ApiError(429, "rate_limit_reached_error",
                             f"Your account {ORG} request reached organization max RPM: 3{hint}")
        case "overloaded":
            return _ApiError(429, "engine_overloaded_error",
                             "The engine is currently overloaded, please try again later")
        case "quota" | "quota_403":
            return _ApiError(429 if fault.kind == "quota" else 403, "exceeded_current_quota_error",
                             "You exceeded your current token quota: <org-fake> 338950, "
                             "please check your account balance")
        case "suspended":
            return _ApiError(429, "exceeded_current_quota_error",
                             f"Your account {ORG} is suspended, please check your plan and billing details")
        case "server_error":
            return _ApiError(500, "server_error", "The server had an error while processing your request")
    raise AssertionError(f"not an error fault: {fault.kind}")


# ------------------------------------------------------------------------------------------------ recording

@dataclass
class Recorded:
    """One request as the fake saw it (control calls under /_fake/ are not recorded)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Optional[dict]  # the JSON object sent, or None (no body, not JSON, or not an object)
    time: float  # time.monotonic() when the request had been read
    disconnected_early: bool = False  # the client hung up before the reply was complete ([DONE] for streams)

    @property
    def model(self) -> Optional[str]:
        model = (self.body or {}).get("model")
        return model if isinstance(model, str) else None

    def to_json(self) -> dict:
        return {"method": self.method, "path": self.path, "body": self.body,
                "disconnectedEarly": self.disconnected_early, "model": self.model, "time": self.time}


# ----------------------------------------------------------------------------------------------- models

def _model_entry(model_id: str, context_length: int, *, image: bool = False, video: bool = False,
                 reasoning: bool = False) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1769472000, "owned_by": "moonshot",
            "context_length": context_length, "supports_image_in": image, "supports_video_in": video,
            "supports_reasoning": reasoning}


def default_models() -> list[dict[str, Any]]:
    """The `/models` list the fake serves unless told otherwise (a fresh copy each call)."""
    return [
        _model_entry("kimi-k2.5", 262144, image=True, video=True, reasoning=True),
        _model_entry("kimi-k2-thinking", 262144, reasoning=True),
        _model_entry("kimi-k2-thinking-turbo", 262144, reasoning=True),
        _model_entry("kimi-k2-turbo-preview", 262144),
        _model_entry("kimi-k2-0905-preview", 262144),
        _model_entry("moonshot-v1-8k", 8192),
        _model_entry("moonshot-v1-32k", 32768),
        _model_entry("moonshot-v1-128k", 131072),
        _model_entry("moonshot-v1-8k-vision-preview", 8192, image=True),
        _model_entry("moonshot-v1-32k-vision-preview", 32768, image=True),
        _model_entry("moonshot-v1-128k-vision-preview", 131072, image=True),
        _model_entry("moonshot-v1-auto", 131072),
    ]


# ------------------------------------------------------------------------------------------------- errors

class _ApiError(Exception):
    """An OpenAI-shaped error reply: `{"error": {"type", "message"}}` with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, error_type, message

    def body(self) -> dict:
        return {"error": {"type": self.type, "message": self.message}}


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "invalid_request_error", message)


def _model_not_found(model: str) -> _ApiError:
    return _ApiError(404, "resource_not_found_error", f"Not found the model {model} or Permission denied")


def _context_too_long(context_length: int, requested: int) -> _ApiError:
    return _invalid(f"Invalid request: Your request exceeded model token limit: {context_length} "
                    f"(requested: {requested})")


# ----------------------------------------------------------------------------------------- token estimate

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


# ------------------------------------------------------------------------------------ deterministic replies

# A fence opened with N backticks closes with exactly N (kimi_lsp.prompts lengthens fences around ```).
_FENCE = re.compile(r"^(?P<ticks>`{3,})[ \t]*(?P<lang>[^\s`]*)[^\n]*\n(?P<code>.*?)^(?P=ticks)[ \t]*$",
                    re.MULTILINE | re.DOTALL)
_RENAME = re.compile(r"rename\s+[`'\"]?(\w+)[`'\"]?\s+to\s+[`'\"]?(\w+)", re.IGNORECASE)
_HASH_COMMENT_LANGS = {"", "python", "py", "python3", "shell", "shellscript", "sh", "bash", "zsh", "fish",
                       "ruby", "rb"}
THINK_TAGS = "<think>fake hidden reasoning</think>"


def _labelled_line(label: str, text: str) -> Optional[str]:
    """The value of the first `Label: value` line in `text`, ignoring fenced code (which may say anything)."""
    match = re.search(rf"^{label}:[ \t]*(.*?)[ \t]*$", _FENCE.sub("", text), re.MULTILINE)
    return match.group(1) if match else None


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
    """
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    task = (_labelled_line("Task", system) or _labelled_line("Task", user) or "").lower()
    if images := _images(messages):
        return _vision_content(task, user, images)
    if _tool_results(messages) and "ONLY the code" not in system:
        return _tool_results_content(messages)
    blocks = list(_FENCE.finditer(user))
    if not blocks:
        return f"**fake-kimi** answers: {user[:80]}"
    lang = blocks[-1].group("lang")
    code = blocks[-1].group("code").removesuffix("\n")  # the newline before the closing fence
    instruction = _labelled_line("Instruction", user) or ""
    if "ONLY the code" in system:
        edited = _transform_code(code, lang, task, instruction)
        ticks = "```"
        while ticks in edited:  # as a careful model would, and as kimi_lsp.prompts fences code
            ticks += "`"
        return f"{ticks}{lang}\n{edited}\n{ticks}"
    lines = code.splitlines()
    first = lines[0].strip()[:60] if lines else ""
    reply = (f"**fake-kimi** explains {len(lines)} lines of {lang or 'text'} code (model {model}).\n\n"
             f"The first line is `{first}`.\n\n")
    return reply + (f"Instruction: {instruction}" if instruction else "")


def fake_reasoning(model: str) -> str:
    return f"Thinking about the request for {model}. " * 3


# ------------------------------------------------------------------------------------------------- vision

IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)
_HTML_LIKE_LANGS = {"html", "htm", "markdown", "md", "xml", "svg", "vue", "svelte"}
_MOCKUP_HASH_LANGS = (_HASH_COMMENT_LANGS - {""}) | {"yaml", "yml"}


@dataclass
class _Image:
    mime: str
    data: bytes

    def label(self, number: int) -> str:
        """`img1=image/png,1234B,sha=ab12cd34`: enough for a test to prove the right bytes arrived intact."""
        return f"img{number}={self.mime},{len(self.data)}B,sha={hashlib.sha256(self.data).hexdigest()[:8]}"


def _decode_image(url: Any) -> _Image:
    """The image of an `image_url.url`, or the 400 Moonshot answers for a URL it does not take."""
    if not isinstance(url, str) or not url:
        raise _invalid("Invalid request: image_url.url is required")
    if re.match(r"https?://", url, re.IGNORECASE):
        raise _invalid("Invalid request: image_url only accepts base64 data URLs (data:image/png;base64,...) "
                       "or ms:// file ids, not http(s) URLs")
    if url.startswith("ms://"):
        raise _invalid(f"Invalid request: file {url.removeprefix('ms://')} not found")
    match = _DATA_URL.fullmatch(url)
    if match is None or match.group("params").lower().split(";")[-1] != "base64":
        raise _invalid("Invalid request: image_url must be a base64 data URL (data:<mime>;base64,<data>)")
    mime = match.group("mime").lower()
    if mime not in IMAGE_MIMES:
        raise _invalid(f"Invalid request: unsupported image type {mime or '(none)'!r}: "
                       f"only {', '.join(IMAGE_MIMES)} are supported")
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Invalid request: the image data is not valid base64") from None
    if not data:
        raise _invalid("Invalid request: the image data is empty")
    return _Image(mime, data)


def _image_parts(messages: list[dict]) -> Iterable[tuple[int, dict]]:
    """(message position, image_url part) for every image part of the request, in order."""
    for index, message in enumerate(messages):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                yield index, part


def _check_images(model: str, entry: dict, messages: list[dict]) -> None:
    for _, part in _image_parts(messages):
        if not entry.get("supports_image_in"):
            raise _invalid(f"Invalid request: Model {model} does not support image input")
        image_url = part.get("image_url")
        _decode_image(image_url.get("url") if isinstance(image_url, dict) else None)


def _images(messages: list[dict]) -> list[_Image]:
    """The decodable images of a request (validation has refused the others already)."""
    images = []
    for _, part in _image_parts(messages):
        image_url = part.get("image_url")
        with contextlib.suppress(_ApiError):
            images.append(_decode_image(image_url.get("url") if isinstance(image_url, dict) else None))
    return images


def _vision_content(task: str, user: str, images: list[_Image]) -> str:
    """The reply to a request with images: it depends on their bytes, so tests see the right file arrived.

    alt-text: `Fake alt text for image/png (1234 bytes)` (the first image); describe-image: `**fake-kimi** sees
    N image(s): img1=..., img2=....` then a paragraph `The picture is deterministic.`; mockup: a fenced block in
    the language of a `Language:` line (else the last fence's), holding a comment `mockup for img1=...` and
    one placeholder line (`_mockup_code`); any other task: `**fake-kimi** answers about img1=..., img2=...`.
    `Language: plain text` (what kimi_lsp.prompts says for a document without a language) means none.
    """
    labels = ", ".join(image.label(n) for n, image in enumerate(images, 1))
    if task == "alt-text":
        return f"Fake alt text for {images[0].mime} ({len(images[0].data)} bytes)"
    if task == "describe-image":
        return f"**fake-kimi** sees {len(images)} image(s): {labels}.\n\nThe picture is deterministic."
    if task == "mockup":
        blocks = list(_FENCE.finditer(user))
        lang = _labelled_line("Language", user) or (blocks[-1].group("lang") if blocks else "")
        lang = "" if lang.lower() in ("plain text", "plaintext") else lang
        return f"```{lang}\n{_mockup_code(lang, f'mockup for {labels}')}\n```"
    return f"**fake-kimi** answers about {labels}"


def _mockup_code(lang: str, note: str) -> str:
    """A comment line with `note`, then `<div class="mockup"></div>` (html-like), `mockup = None` (python) or
    `/* mockup */` (anything else: a placeholder, not necessarily valid code in that language)."""
    key = lang.lower()
    if key in _HTML_LIKE_LANGS:
        return f'<!-- {note} -->\n<div class="mockup"></div>'
    if key in ("css", "scss", "less"):
        return f"/* {note} */\n/* mockup */"
    if key in _MOCKUP_HASH_LANGS:
        comment = f"# {note}"
    elif key in ("lua", "sql"):
        comment = f"-- {note}"
    else:
        comment = f"// {note}"
    return comment + ("\nmockup = None" if key in ("python", "py", "python3") else "\n/* mockup */")


# -------------------------------------------------------------------------------------------------- tools

_READ_REQUEST = re.compile(r"\bread\s+[`'\"]?([\w./@-]+)", re.IGNORECASE)
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
        return {"index": index, "id": self.id, "type": self.type,
                "function": {"name": self.name, "arguments": self.arguments}}


def _first_user_text(messages: list[dict]) -> str:
    return next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")


def _tool_results(messages: list[dict]) -> list[dict]:
    """The tool messages after the last user message: this turn's results."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return [m for m in messages[last_user + 1:] if m.get("role") == "tool"]


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
    user0 = _first_user_text(messages)
    paths = _requested_reads(user0)
    done = len(_tool_results(messages))
    number = sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")

    def read(path: str) -> _ToolCall:
        arguments = json.dumps({"path": path, "startLine": 1, "endLine": 200}, ensure_ascii=False)
        return _ToolCall(f"read_file:{number}", read_type or "function", "read_file", arguments,
                         f"I should read {path}.")

    read_type = _offered_type(tools, "read_file")
    if read_type and KEEP_CALLING_TOOLS in user0:
        return read(paths[0] if paths else "README.md")
    if read_type and done < len(paths):
        return read(paths[done])
    if "web search" in user0.lower() and _offered_type(tools, WEB_SEARCH) == "builtin_function" and not done:
        query = user0[:40]
        return _ToolCall(f"{WEB_SEARCH}:{number}", "builtin_function", WEB_SEARCH,
                         json.dumps({"query": query}, ensure_ascii=False), f"I should search the web for {query}.")
    return None


def _tool_results_content(messages: list[dict]) -> str:
    """One line per tool result of this turn, in order.

    `**fake-kimi** read <path>: <first non-empty line, stripped, at most 80 characters>`, or for a result that
    starts with "error"/"Error" or is a JSON object with an "error" key: `**fake-kimi** could not read <path>:
    <the error's first line, at most 120 characters>`; for `$web_search`: `**fake-kimi** searched the web for:
    <query>`. <path> comes from the matching call's arguments (a call without one shows `<name> <arguments>`).
    """
    calls = {call.get("id"): call for m in messages if m.get("role") == "assistant"
             for call in m.get("tool_calls") or [] if isinstance(call, dict)}
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
        if not (isinstance(function, dict) and tool.get("type") in ("function", "builtin_function")
                and isinstance(function.get("name"), str) and function["name"]):
            raise _invalid(f"Invalid request: invalid tool at index {index}: expected "
                           '{"type": "function", "function": {"name": ..., "parameters": ...}}')
    waiting: dict[str, int] = {}  # call id -> position of the assistant message that made it
    answered: set[str] = set()
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and message.get("tool_calls") is not None:
            calls = message["tool_calls"]
            if not isinstance(calls, list):
                raise _invalid(f"Invalid request: tool_calls of the message at position {index} must be an array")
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"] \
                        or not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                        or not isinstance(function.get("arguments", ""), str):
                    raise _invalid(f"Invalid request: invalid tool call in the message at position {index}")
                waiting[call["id"]] = index
                answered.discard(call["id"])
        elif message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _invalid(f"Invalid request: the message at position {index} with role 'tool' "
                               "must have a tool_call_id")
            if call_id in answered:
                raise _invalid(f"Invalid request: tool_call_id {call_id} of the message at position {index} "
                               "answers a tool call that already has a tool message")
            if call_id not in waiting:
                raise _invalid(f"Invalid request: tool_call_id {call_id} of the message at position {index} "
                               "is not found in the tool calls of a preceding assistant message")
            del waiting[call_id]
            answered.add(call_id)
    if waiting:
        call_id, index = min(waiting.items(), key=lambda item: item[1])
        raise _invalid(f"Invalid request: tool call {call_id} of the assistant message at position {index} "
                       "has no tool message answering it")
    return tools


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


# ------------------------------------------------------------------------------------------- chat requests

_ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class _ChatRequest:
    model: str
    messages: list[dict]
    thinking: bool
    stream: bool
    include_usage: bool
    max_tokens: Optional[int]
    prompt_tokens: int
    tools: list[dict] = field(default_factory=list)
    tool_choice: Optional[str] = None  # None, "auto" or "none"


@dataclass
class _Reply:
    reasoning: str
    content: str
    finish_reason: str
    tool_calls: list[_ToolCall] = field(default_factory=list)

    def usage(self, prompt_tokens: int) -> dict[str, int]:
        arguments = "".join(call.arguments for call in self.tool_calls)
        completion = math.ceil(len(self.content + self.reasoning + arguments) / 4)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion}


def _is_empty(content: Any) -> bool:
    texts, images = _parts(content)
    return images == 0 and not any(texts)


def _check_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("Invalid request: messages must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _invalid(f"Invalid request: invalid message at position {index}")
    return messages


def _json_object(raw: bytes) -> Optional[dict]:
    with contextlib.suppress(ValueError):
        value = json.loads(raw)
        return value if isinstance(value, dict) else None
    return None


def _parse_body(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise _invalid(f"Invalid request: the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _invalid("Invalid request: the request body must be a JSON object")
    return value


def _number_text(value: float) -> str:
    return f"{value:g}"  # 1.0 -> "1", as in "only 1 is allowed"


# --------------------------------------------------------------------------------------------- HTTP plumbing

class _BodyTooLarge(Exception):
    pass


class _HttpConnection:
    """One client connection: h11 state, the socket streams, and hang-up detection while replying."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.SERVER)
        self.gone = asyncio.Event()  # the client closed (or reset) the connection
        self.request_method = b""
        self._watcher: Optional[asyncio.Task[None]] = None

    async def next_request(self) -> Optional[tuple[h11.Request, bytes]]:
        """The next complete request and its body, or None once the client has closed the connection."""
        request: Optional[h11.Request] = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue:  # curl does this for larger bodies
                    await self.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
                self.h11.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
                self.request_method = event.method
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed, or PAUSED after a reply we framed with a close
                return None

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def respond(self, status: int, body: bytes, content_type: str) -> None:
        await self.start_response(status, content_type, length=len(body))
        if body and self.request_method != b"HEAD":
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def respond_json(self, status: int, value: Any) -> None:
        await self.respond(status, _dumps(value), "application/json")

    async def start_response(self, status: int, content_type: str, length: Optional[int] = None) -> None:
        """Send the status line and headers; without a length, h11 frames the body chunked (or by close)."""
        headers = [("content-type", content_type), ("msh-request-id", uuid.uuid4().hex)]
        if length is not None:
            headers.append(("content-length", str(length)))
        else:
            headers.append(("cache-control", "no-cache"))
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        await self.send(h11.Response(status_code=status, headers=headers, reason=reason))

    async def send_data(self, data: bytes) -> bool:
        """Write part of the body; False if the client is gone."""
        if self.gone.is_set():
            return False
        try:
            await self.send(h11.Data(data=data))
        except (ConnectionError, OSError):
            self.gone.set()
        return not self.gone.is_set()

    async def pause(self, seconds: float, precise: bool = False) -> bool:
        """Sleep, but wake as soon as the client hangs up; False if it did. The event loop wakes up to 1 ms
        late (epoll's resolution); `precise` yields in a loop for the last millisecond instead."""
        if seconds > 0:
            deadline = time.monotonic() + seconds
            coarse = seconds - PRECISE_TAIL if precise else seconds
            if coarse > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.gone.wait(), coarse)
            while precise and time.monotonic() < deadline and not self.gone.is_set():
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(0)  # let the watcher run even when replies are instantaneous
        return not self.gone.is_set()

    def watch_for_hangup(self) -> None:
        """While a reply is being produced, read the socket so a client hang-up is noticed at once."""
        self._watcher = asyncio.create_task(self._watch())

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None

    async def _watch(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.h11.receive_data(data)  # a pipelined next request: h11 keeps it for the next cycle
        except (ConnectionError, OSError):
            pass
        self.gone.set()

    async def close(self) -> None:
        await self.stop_watching()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def _dumps(value: Any) -> bytes:
    # Compact and raw UTF-8, like the live API; a lone surrogate (no UTF-8 for it) goes out as its JSON escape.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def _sse(value: Any) -> bytes:
    return b"data: " + (value if isinstance(value, bytes) else _dumps(value)) + b"\n\n"


PRECISE_TAIL = 0.0015  # seconds of a precise pause spent yielding rather than in the loop's timer
Step = tuple[float, bytes]  # (seconds to wait first, bytes to send)


@dataclass
class _Body:
    """A chat reply body as a schedule of writes."""

    content_type: str
    steps: list[Step]
    complete: bool = True  # False: close the connection mid-body (the "cut" fault)
    length: Optional[int] = None  # Content-Length; None frames the body chunked
    # The step whose delay is the first-token delay. It counts from when the request was read, like a real
    # API's time to first token, so the fake's own work (validation, building the reply) is inside it.
    first: Optional[int] = None


Handler = Callable[[_HttpConnection, Recorded, bytes], Awaitable[bool]]


# -------------------------------------------------------------------------------------------- the fake

class FakeMoonshot:
    """The fake API server. Use `start()`/`stop()` on a running loop, or `start_in_thread()`/`stop_thread()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, valid_keys: Iterable[str] = ("sk-fake-valid-key",),
                 first_token_delay: float = 0.0, token_delay: float = 0.0, chunk_chars: int = 6,
                 usage_placement: UsagePlacement = "choice", balance: float = 49.58894,
                 models: Optional[list[dict]] = None) -> None:
        self.host, self.port = host, port
        self.valid_keys = frozenset(valid_keys)
        self.models = [dict(m) for m in models] if models is not None else default_models()
        self.requests: list[Recorded] = []
        self.first_token_delay, self.token_delay, self.chunk_chars = 0.0, 0.0, 6
        self.usage_placement: str = "choice"
        self.balance = 0.0
        self._config = {"first_token_delay": first_token_delay, "token_delay": token_delay,
                        "chunk_chars": chunk_chars, "usage_placement": usage_placement, "balance": balance}
        self.configure(**self._config)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()  # tests script and read from their own thread in thread mode
        self._server: Optional[asyncio.Server] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "/v1/models"): self._list_models,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/tokenizers/estimate-token-count"): self._estimate,
            ("GET", "/v1/users/me/balance"): self._balance,
        }

    # ---------------------------------------------------------------------------------- test-facing API

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def configure(self, *, first_token_delay: Optional[float] = None, token_delay: Optional[float] = None,
                  chunk_chars: Optional[int] = None, usage_placement: Optional[str] = None,
                  balance: Optional[float] = None) -> None:
        """Change streaming behaviour or the balance; `reset()` restores the constructor's values."""
        if usage_placement is not None and usage_placement not in USAGE_PLACEMENTS:
            raise ValueError(f"usage_placement must be one of {USAGE_PLACEMENTS}")
        if chunk_chars is not None and (not isinstance(chunk_chars, int) or chunk_chars < 1):
            raise ValueError("chunk_chars must be a positive integer")
        for name, value in (("first_token_delay", first_token_delay), ("token_delay", token_delay),
                            ("balance", balance)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ValueError(f"{name} must be a number")
        if first_token_delay is not None:
            self.first_token_delay = float(first_token_delay)
        if token_delay is not None:
            self.token_delay = float(token_delay)
        if chunk_chars is not None:
            self.chunk_chars = chunk_chars
        if usage_placement is not None:
            self.usage_placement = usage_placement
        if balance is not None:
            self.balance = float(balance)

    def script(self, *faults: Fault | str) -> None:
        """Queue faults; each one shapes the next /chat/completions request that passes auth."""
        queued = [f if isinstance(f, Fault) else Fault(kind=f) for f in faults]
        with self._lock:
            self._faults.extend(queued)

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def reset(self) -> None:
        """Forget recorded requests and queued faults, and restore the constructor's configuration."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
        self.configure(**self._config)

    async def wait_for_disconnect(self, timeout: float) -> bool:
        """True once the latest chat request has been hung up on by its client, False after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            chats = self.chat_requests()
            if chats and chats[-1].disconnected_early:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> "FakeMoonshot":
        """Listen on the running loop; `base_url` is valid once this returns."""
        if self._server is not None:
            raise RuntimeError("the fake is already running")
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)  # live connections: a streaming reply would otherwise keep going
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def start_in_thread(self) -> "FakeMoonshot":
        """Run the fake on its own loop in a daemon thread; returns once it is listening."""
        if self._thread is not None:
            raise RuntimeError("the fake is already running in a thread")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the caller (port in use, bad host...)
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="fake-moonshot", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    # ------------------------------------------------------------------------------------ connections

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _HttpConnection(reader, writer)
        try:
            while True:
                try:
                    incoming = await conn.next_request()
                except h11.RemoteProtocolError as exc:
                    await self._try_error(conn, exc.error_status_hint, "Bad Request: malformed HTTP")
                    break
                except _BodyTooLarge:
                    await self._try_error(conn, 413, "Request Entity Too Large")
                    break
                if incoming is None:
                    break
                try:
                    keep_open = await self._respond(conn, *incoming)
                except (ConnectionError, OSError):
                    break
                except Exception:
                    # A bug in the fake must cost one request, never the serving loop.
                    log.exception("fake-moonshot: error while answering a request")
                    await self._try_error(conn, 500, "fake-moonshot internal error")
                    break
                if not (keep_open and conn.reusable):
                    break
                conn.h11.start_next_cycle()
        except (ConnectionError, OSError):
            pass  # the client vanished while we were reading
        except asyncio.CancelledError:
            # stop() cancels live connections. This task is top-level (nobody awaits its result), and
            # Python 3.11's start_server logs a handler that ends cancelled as an unhandled error.
            pass
        finally:
            self._tasks.discard(task)
            await conn.close()

    @staticmethod
    async def _try_error(conn: _HttpConnection, status: int, message: str) -> None:
        """Best effort: answer an error if the reply has not started yet (the client may be gone)."""
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(Exception):
            await conn.respond_json(status, {"error": {"type": "invalid_request_error", "message": message}})

    async def _respond(self, conn: _HttpConnection, request: h11.Request, raw: bytes) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("latin-1").split("?", 1)[0]
        if path.startswith("/_fake/"):
            return await self._control(conn, method, path, raw)
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        record = Recorded(method, path, headers, _json_object(raw), time.monotonic())
        with self._lock:
            self.requests.append(record)
        handler = self._routes.get((method, path))
        if handler is None:
            await conn.respond_json(404, NOT_FOUND_BODY)
            return True
        try:
            self._check_auth(headers)
            return await handler(conn, record, raw)
        except _ApiError as err:  # raised only before a reply starts
            await conn.respond_json(err.status, err.body())
            return True

    def _check_auth(self, headers: dict[str, str]) -> None:
        scheme, _, key = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _ApiError(401, "incorrect_api_key_error", "Incorrect API key provided")
        if key.strip() not in self.valid_keys:
            raise _ApiError(401, "invalid_authentication_error", "Invalid Authentication")

    # ---------------------------------------------------------------------------------- simple endpoints

    def _model_entry(self, model: Any) -> dict:
        if not isinstance(model, str) or not model:
            raise _invalid("Invalid request: model is required")
        for entry in self.models:
            if entry.get("id") == model:
                return entry
        raise _model_not_found(model)

    async def _list_models(self, conn: _HttpConnection, record: Recorded, raw: bytes) -> bool:
        await conn.respond_json(200, {"object": "list", "data": self.models})
        return True

    async def _balance(self, conn: _HttpConnection, record: Recorded, raw: bytes) -> bool:
        # Split like the reference sample: a little cash, the rest vouchers.
        cash = min(self.balance, 3.00001)
        data = {"available_balance": self.balance, "voucher_balance": round(self.balance - cash, 5),
                "cash_balance": round(cash, 5)}
        await conn.respond_json(200, {"code": 0, "data": data, "scode": "0x0", "status": True})
        return True

    async def _estimate(self, conn: _HttpConnection, record: Recorded, raw: bytes) -> bool:
        body = _parse_body(raw)
        self._model_entry(body.get("model"))
        messages = _check_messages(body.get("messages"))
        await conn.respond_json(200, {"data": {"total_tokens": estimate_tokens(messages)}})
        return True

    # ------------------------------------------------------------------------------------ chat completions

    def _next_fault(self) -> Optional[Fault]:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    async def _chat(self, conn: _HttpConnection, record: Recorded, raw: bytes) -> bool:
        fault = self._next_fault()
        kind = fault.kind if fault else None
        if fault is not None and kind in ERROR_FAULTS:
            raise self._scripted_error(fault, record.body or {})
        if kind == "no_error_body":
            await conn.respond(500, b"upstream connect error", "text/plain")
            return True
        if kind == "wrong_content_type":
            page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>fake</body></html>"
            await conn.respond(200, page, "text/html; charset=utf-8")
            return True

        request = self._check_chat(_parse_body(raw))
        reply = self._compose(request, fault)
        body = self._sse_body(request, reply, fault) if request.stream else self._json_body(request, reply, fault)
        if kind == "drip":
            # The same bytes, one a second: for read timeouts and cancellation while a reply trickles in.
            data = b"".join(chunk for _, chunk in body.steps)
            body.steps = [(0.0 if i == 0 else DRIP_INTERVAL, data[i:i + 1]) for i in range(len(data))]
            body.first = None

        conn.watch_for_hangup()
        try:
            await conn.start_response(200, body.content_type, body.length)
            for index, (delay, data) in enumerate(body.steps):
                if index == body.first:
                    delay = record.time + delay - time.monotonic()
                if not (await conn.pause(delay, precise=index == body.first) and await conn.send_data(data)):
                    record.disconnected_early = True
                    return False
        finally:
            await conn.stop_watching()
        if not body.complete:
            return False  # "cut": close mid-body, without [DONE] or the end of the chunked framing
        await conn.send(h11.EndOfMessage())
        return True

    def _scripted_error(self, fault: Fault, body: dict) -> _ApiError:
        model = body.get("model") if isinstance(body.get("model"), str) else SWITCHABLE_THINKING_MODEL
        entry = next((m for m in self.models if m.get("id") == model), {})
        context_length = int(entry.get("context_length", 262144))
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        return _fault_error(fault, model, context_length, max(context_length + 1, estimate_tokens(messages)))

    def _check_chat(self, body: dict) -> _ChatRequest:
        """Validate a chat request the way Moonshot does, in the order the reference gives."""
        entry = self._model_entry(body.get("model"))
        model: str = entry["id"]
        messages = _check_messages(body.get("messages"))
        for index, message in enumerate(messages):
            if message.get("role") == "assistant" and message.get("tool_calls"):
                continue  # an assistant tool-call turn may carry no text
            if _is_empty(message.get("content")):
                raise _invalid(f"Invalid request: the message at position {index} with role "
                               f"'{message['role']}' must not be empty")
        tools = _check_tools(body.get("tools"), messages)
        _check_images(model, entry, messages)

        thinking = body.get("thinking")
        if model == SWITCHABLE_THINKING_MODEL:
            thinks = not (isinstance(thinking, dict) and thinking.get("type") == "disabled")
            fixed = {"temperature": 1.0 if thinks else 0.6, "top_p": 0.95, "n": 1,
                     "presence_penalty": 0, "frequency_penalty": 0}
            for name, allowed in fixed.items():
                if body.get(name) is not None and body[name] != allowed:
                    raise _invalid(f"invalid {name}: only {_number_text(allowed)} is allowed for this model")
        else:
            thinks = bool(entry.get("supports_reasoning"))

        if thinking is not None:
            if model != SWITCHABLE_THINKING_MODEL:
                raise _invalid(f'thinking is not supported by model "{model}"')
            if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
                raise _invalid('invalid thinking: type must be "enabled" or "disabled"')
            if "keep" in thinking:
                raise _invalid(f'thinking.keep is not supported by model "{model}"')

        temperature = body.get("temperature")
        if model.startswith("moonshot-v1") and temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                    or not 0 <= temperature <= 1:
                raise _invalid(f"invalid temperature: {temperature} is not in [0, 1]")

        tool_choice = body.get("tool_choice")
        if tool_choice is not None and tool_choice not in ("auto", "none"):
            if isinstance(tool_choice, dict) and thinks:
                raise _invalid("tool_choice 'specified' is incompatible with thinking enabled")
            label = "specified" if isinstance(tool_choice, dict) else tool_choice
            raise _invalid(f"tool_choice '{label}' is not supported")

        if thinks:
            for index, message in enumerate(messages):
                if message.get("role") == "assistant" and message.get("tool_calls") \
                        and not message.get("reasoning_content"):
                    raise _invalid("thinking is enabled but reasoning_content is missing in assistant tool call "
                                   f"message at index {index}")

        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise _invalid("invalid max_tokens: must be a positive integer")
        prompt_tokens = estimate_tokens(messages)
        context_length = int(entry.get("context_length", 262144))
        if prompt_tokens + (max_tokens or 0) > context_length:
            raise _context_too_long(context_length, prompt_tokens + (max_tokens or 0))

        stream_options = body.get("stream_options")
        return _ChatRequest(
            model=model, messages=messages, thinking=thinks, stream=body.get("stream") is True,
            include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
            max_tokens=max_tokens, prompt_tokens=prompt_tokens, tools=tools, tool_choice=tool_choice)

    @staticmethod
    def _compose(request: _ChatRequest, fault: Optional[Fault]) -> _Reply:
        reasoning = fake_reasoning(request.model) if request.thinking else ""
        kind = fault.kind if fault else None
        if fault is not None and kind == "reply":  # exact, whatever max_tokens says
            content = fault.content if fault.content is not None else fake_content(request.model, request.messages)
            return _Reply(fault.reasoning if fault.reasoning is not None else reasoning, content, fault.finish_reason)
        if kind == "huge":
            return _Reply(reasoning, ("x" * 1023 + "\n") * HUGE_REPLY_LINES, "stop")
        if kind not in ("think_tags", "length"):  # those two shape content: they answer, never call
            if call := _next_tool_call(request.messages, request.tools, request.tool_choice):
                return _Reply(call.reasoning if request.thinking else "", "", "tool_calls", [call])
        content = fake_content(request.model, request.messages)
        if kind == "think_tags":
            content = THINK_TAGS + content
        if kind == "length":
            return _Reply(reasoning, content[: max(1, len(content) // 2)], "length")
        return _Reply(*_apply_budget(reasoning, content, request.max_tokens))

    def _first_delay(self, fault: Optional[Fault]) -> float:
        return fault.delay if fault is not None and fault.kind == "slow_first" else self.first_token_delay

    def _completion(self, request: _ChatRequest, reply: _Reply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [call.to_message(i) for i, call in enumerate(reply.tool_calls)]
        return {"id": _completion_id(), "object": "chat.completion", "created": int(time.time()),
                "model": request.model,
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                "usage": {**reply.usage(request.prompt_tokens), "cached_tokens": 0}}

    def _json_body(self, request: _ChatRequest, reply: _Reply, fault: Optional[Fault]) -> _Body:
        data = _dumps(self._completion(request, reply))
        kind, delay = (fault.kind if fault else None), self._first_delay(fault)
        if kind == "not_json":
            data = b"{not json"
        if kind == "cut":  # announce the full length, send half of it, close
            return _Body("application/json", [(delay, data[: len(data) // 2])], complete=False, length=len(data),
                         first=0)
        return _Body("application/json", [(delay, data)], length=len(data), first=0)

    def _sse_body(self, request: _ChatRequest, reply: _Reply, fault: Optional[Fault]) -> _Body:
        """The SSE events of a streamed reply, each with the delay before it."""
        kind = fault.kind if fault else None
        chunk_id, created = _completion_id(), int(time.time())
        top_level_usage = self.usage_placement in ("final", "both") or request.include_usage
        usage = reply.usage(request.prompt_tokens)

        def chunk(delta: dict, finish_reason: Optional[str] = None, with_usage: bool = False) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            if with_usage:
                choice["usage"] = usage
            event: dict[str, Any] = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                                     "model": request.model, "choices": [choice]}
            if top_level_usage:
                event["usage"] = None
            return _sse(event)

        size = HUGE_CHUNK_CHARS if kind == "huge" else self.chunk_chars
        reasoning = [chunk({"reasoning_content": p}) for p in _pieces(reply.reasoning, size)]
        content = [chunk({"content": p}) for p in _pieces(reply.content, size)]
        for index, call in enumerate(reply.tool_calls):
            # As the reference shows: id, type and name with the first arguments fragment, then the rest.
            half = len(call.arguments) // 2
            first = {**call.to_message(index), "function": {"name": call.name, "arguments": call.arguments[:half]}}
            content.append(chunk({"tool_calls": [first]}))
            content.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments[half:]}}]}))
        complete = True
        if fault is not None and kind in ("cut", "not_json"):
            head, tail = content[: fault.after_chunks], content[fault.after_chunks:]
            if kind == "cut":
                content, complete = head, False
            else:
                content = head + [_sse(b"{not json")] + tail

        tokens = reasoning + content  # reasoning always precedes content
        steps: list[Step] = [(0.0, chunk({"role": "assistant", "content": ""}))]
        steps += [(self._first_delay(fault) if i == 0 else self.token_delay, data) for i, data in enumerate(tokens)]
        if not complete:
            return _Body("text/event-stream", steps, complete=False, first=1 if len(steps) > 1 else None)
        steps.append((0.0 if tokens else self._first_delay(fault),
                      chunk({}, reply.finish_reason, with_usage=self.usage_placement in ("choice", "both"))))
        if top_level_usage:
            steps.append((0.0, _sse({"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                                     "model": request.model, "choices": [], "usage": usage})))
        steps.append((0.0, _sse(b"[DONE]")))
        return _Body("text/event-stream", steps, first=1)

    # ------------------------------------------------------------------------------------ control API

    async def _control(self, conn: _HttpConnection, method: str, path: str, raw: bytes) -> bool:
        """Endpoints for tests that run the fake as a separate process (not recorded, no auth)."""
        try:
            if (method, path) == ("POST", "/_fake/script"):
                faults = (_json_object(raw) or {}).get("faults")
                if not isinstance(faults, list):
                    raise ValueError('expected {"faults": [...]}')
                parsed = [Fault.from_json(item) for item in faults]
                self.script(*parsed)
                await conn.respond_json(200, {"queued": len(parsed)})
            elif (method, path) == ("GET", "/_fake/requests"):
                with self._lock:
                    recorded = [r.to_json() for r in self.requests]
                await conn.respond_json(200, {"requests": recorded})
            elif (method, path) == ("POST", "/_fake/reset"):
                self.reset()
                await conn.respond_json(200, {"ok": True})
            elif (method, path) == ("POST", "/_fake/config"):
                names = {"firstTokenDelay": "first_token_delay", "tokenDelay": "token_delay",
                         "chunkChars": "chunk_chars", "usagePlacement": "usage_placement", "balance": "balance"}
                body = _json_object(raw)
                if body is None or not set(body) <= set(names):
                    raise ValueError(f"expected an object with any of {sorted(names)}")
                self.configure(**{names[key]: value for key, value in body.items()})
                await conn.respond_json(200, {"ok": True})
            else:
                await conn.respond_json(404, NOT_FOUND_BODY)
        except (ValueError, TypeError) as exc:
            await conn.respond_json(400, {"error": {"type": "invalid_request_error", "message": str(exc)}})
        return True


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:20]


# ------------------------------------------------------------------------------------------------------ CLI

def main(argv: Optional[list[str]] = None) -> int:
    """Serve the fake until SIGTERM/SIGINT; the first stdout line says where (editor tests wait for it)."""
    parser = argparse.ArgumentParser(prog="kimi-lsp fake-api", description="A fake Moonshot API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--first-token-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--chunk-chars", type=int, default=6, metavar="N")
    parser.add_argument("--usage-placement", choices=USAGE_PLACEMENTS, default="choice")
    parser.add_argument("--key", action="append", dest="keys", metavar="K",
                        help="a valid API key (repeatable; default sk-fake-valid-key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fake = FakeMoonshot(args.host, args.port, valid_keys=args.keys or ("sk-fake-valid-key",),
                        first_token_delay=args.first_token_delay, token_delay=args.token_delay,
                        chunk_chars=args.chunk_chars, usage_placement=args.usage_placement)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows
                loop.add_signal_handler(signum, stop.set)
        try:
            await fake.start()
        except OSError as exc:  # port in use, unknown host: say so plainly, no traceback
            print(f"fake-moonshot: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"fake-moonshot listening on {fake.base_url}", flush=True)
        try:
            await stop.wait()
        finally:
            await fake.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
