"""The fake itself: a faithful fake of Moonshot's Kimi HTTP API, served on loopback for every test in the project.

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

Account behaviour, per API key: an opt-in rate-limit tier (`tier`, `rpm_window`: see `limits`), the automatic
prefix cache behind `usage.cached_tokens` (`cache_ttl`: see `cache`), and the balance (chat fails with the quota
error at `balance <= 0`). Model rules (December 2026 line-up, retired ids 404) live in `models`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import h11

from kimi_lsp.fake.cache import PrefixCache, prompt_text
from kimi_lsp.fake.faults import (
    DRIP_INTERVAL,
    ERROR_FAULTS,
    HUGE_CHUNK_CHARS,
    HUGE_REPLY_LINES,
    NOT_FOUND_BODY,
    SWITCHABLE_THINKING_MODEL,
    USAGE_PLACEMENTS,
    Fault,
    UsagePlacement,
    _ApiError,
    _context_too_long,
    _fault_error,
    _invalid,
    _model_not_found,
)
from kimi_lsp.fake.http import Handler, Recorded, Step, _Body, _BodyTooLarge, _dumps, _HttpConnection, _sse
from kimi_lsp.fake.limits import TIERS, RateLimiter
from kimi_lsp.fake.models import check_model_rules, default_models, rules_for
from kimi_lsp.fake.prompt import _parts, estimate_tokens
from kimi_lsp.fake.replies import THINK_TAGS, _apply_budget, fake_content, fake_reasoning
from kimi_lsp.fake.tools import _check_tools, _next_tool_call, _ToolCall
from kimi_lsp.fake.vision import _check_images

log = logging.getLogger(__name__)


class _Unset:
    """The default of `configure(tier=...)`, where None means "no limits" rather than "leave as is"."""


UNSET = _Unset()

# ------------------------------------------------------------------------------------------------ recording


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
    cached_tokens: int = 0  # of prompt_tokens, from the prefix cache
    tool_choice: Optional[str] = None  # None, "auto" or "none"
    partial: bool = False  # partial mode: the reply continues the last (assistant) message


@dataclass
class _Reply:
    reasoning: str
    content: str
    finish_reason: str
    tool_calls: list[_ToolCall] = field(default_factory=list)

    def usage(self, request: _ChatRequest) -> dict[str, Any]:
        """The reply's usage, `cached_tokens` both at the top level and in prompt_tokens_details (both are seen)."""
        arguments = "".join(call.arguments for call in self.tool_calls)
        completion = math.ceil(len(self.content + self.reasoning + arguments) / 4)
        return {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": request.prompt_tokens + completion,
            "cached_tokens": request.cached_tokens,
            "prompt_tokens_details": {"cached_tokens": request.cached_tokens},
        }


def _check_partial(messages: list[dict], body: dict) -> bool:
    """Partial mode: only the last message may be `partial`, and only an assistant one; not with json_object."""
    for index, message in enumerate(messages):
        if message.get("partial") and (index != len(messages) - 1 or message.get("role") != "assistant"):
            raise _invalid(
                f"Invalid request: only the last message may be partial, and it must be the assistant's "
                f"(position {index})"
            )
    partial = bool(messages[-1].get("partial"))
    fmt = body.get("response_format")
    if partial and isinstance(fmt, dict) and fmt.get("type") == "json_object":
        raise _invalid("Invalid request: partial mode cannot be used with response_format json_object")
    return partial


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


# -------------------------------------------------------------------------------------------- the fake


class FakeMoonshot:
    """The fake API server. Use `start()`/`stop()` on a running loop, or `start_in_thread()`/`stop_thread()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        valid_keys: Iterable[str] = ("sk-fake-valid-key",),
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        chunk_chars: int = 6,
        usage_placement: UsagePlacement = "choice",
        balance: float = 49.58894,
        models: Optional[list[dict]] = None,
        tier: Optional[int] = None,
        rpm_window: float = 60.0,
        cache_ttl: float = 300.0,
        completion_delay: float = -1.0,
    ) -> None:
        self.host, self.port = host, port
        self.valid_keys = frozenset(valid_keys)
        self.models = [dict(m) for m in models] if models is not None else default_models()
        self.requests: list[Recorded] = []
        self.first_token_delay, self.token_delay, self.chunk_chars = 0.0, 0.0, 6
        self.usage_placement: str = "choice"
        self.balance = 0.0
        self.tier: Optional[int] = None  # a key of limits.TIERS; None never limits
        self.rpm_window = 60.0
        self._limiter = RateLimiter()
        self.cache_ttl = 300.0  # seconds a prompt stays in the prefix cache; 0 turns the cache off
        self.completion_delay = -1.0  # first-token delay of partial-mode requests (completions); < 0: as the rest
        self._cache = PrefixCache()
        self._config: dict[str, Any] = {
            "first_token_delay": first_token_delay,
            "token_delay": token_delay,
            "chunk_chars": chunk_chars,
            "usage_placement": usage_placement,
            "balance": balance,
            "tier": tier,
            "rpm_window": rpm_window,
            "cache_ttl": cache_ttl,
            "completion_delay": completion_delay,
        }
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

    def configure(
        self,
        *,
        first_token_delay: Optional[float] = None,
        token_delay: Optional[float] = None,
        chunk_chars: Optional[int] = None,
        usage_placement: Optional[str] = None,
        balance: Optional[float] = None,
        tier: Optional[int] | _Unset = UNSET,
        rpm_window: Optional[float] = None,
        cache_ttl: Optional[float] = None,
        completion_delay: Optional[float] = None,
    ) -> None:
        """Change streaming behaviour, the balance or the rate-limit tier (`tier=None` turns limits off);
        `reset()` restores the constructor's values."""
        if not isinstance(tier, _Unset) and tier is not None and (isinstance(tier, bool) or tier not in TIERS):
            raise ValueError(f"tier must be null or one of {sorted(TIERS)}")
        if rpm_window is not None and (
            isinstance(rpm_window, bool) or not isinstance(rpm_window, (int, float)) or rpm_window <= 0
        ):
            raise ValueError("rpm_window must be a positive number of seconds")
        if cache_ttl is not None and (
            isinstance(cache_ttl, bool) or not isinstance(cache_ttl, (int, float)) or cache_ttl < 0
        ):
            raise ValueError("cache_ttl must be a non-negative number of seconds")
        if usage_placement is not None and usage_placement not in USAGE_PLACEMENTS:
            raise ValueError(f"usage_placement must be one of {USAGE_PLACEMENTS}")
        if chunk_chars is not None and (not isinstance(chunk_chars, int) or chunk_chars < 1):
            raise ValueError("chunk_chars must be a positive integer")
        for name, value in (
            ("first_token_delay", first_token_delay),
            ("token_delay", token_delay),
            ("balance", balance),
            ("completion_delay", completion_delay),
        ):
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
        if not isinstance(tier, _Unset):
            self.tier = tier
        if rpm_window is not None:
            self.rpm_window = float(rpm_window)
        if cache_ttl is not None:
            self.cache_ttl = float(cache_ttl)
        if completion_delay is not None:
            self.completion_delay = float(completion_delay)

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
            self._limiter.clear()
            self._cache.clear()
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

    async def start(self) -> FakeMoonshot:
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

    def start_in_thread(self) -> FakeMoonshot:
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
        conn.record = None
        if path.startswith("/_fake/"):
            return await self._control(conn, method, path, raw)
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        record = Recorded(method, path, headers, _json_object(raw), time.monotonic())
        with self._lock:
            self.requests.append(record)
        conn.record = record
        handler = self._routes.get((method, path))
        if handler is None:
            await conn.respond_json(404, NOT_FOUND_BODY)
            return True
        try:
            self._check_auth(headers)
            return await handler(conn, record, raw)
        except _ApiError as err:  # raised only before a reply starts
            record.error_type = err.type
            await conn.respond_json(err.status, err.body())
            return True

    def _check_auth(self, headers: dict[str, str]) -> None:
        key = _bearer_key(headers)
        if not key:
            raise _ApiError(401, "incorrect_api_key_error", "Incorrect API key provided")
        if key not in self.valid_keys:
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
        data = {
            "available_balance": self.balance,
            "voucher_balance": round(self.balance - cash, 5),
            "cash_balance": round(cash, 5),
        }
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
        key = _bearer_key(record.headers)
        ticket = self._admit(key)  # before faults: a refused request consumes none
        released = False

        def release() -> None:
            nonlocal released
            if ticket is not None and not released:
                released = True
                with self._lock:
                    self._limiter.release(key, ticket)

        try:
            return await self._chat_admitted(conn, record, raw, release)
        finally:
            release()

    def _admit(self, key: str) -> Optional[int]:
        """Count the request against the tier (raises its 429); None when no tier is enforced."""
        tier = self.tier
        if tier is None:
            return None
        with self._lock:
            return self._limiter.admit(key, TIERS[tier], self.rpm_window, time.monotonic())

    def in_flight(self, key: str = "sk-fake-valid-key") -> int:
        """Chat requests of `key` counted in flight by the tier mode (always 0 without a tier)."""
        with self._lock:
            return self._limiter.in_flight(key)

    async def _chat_admitted(
        self, conn: _HttpConnection, record: Recorded, raw: bytes, release: Callable[[], None]
    ) -> bool:
        """The chat request once the tier admitted it; `release` frees its slot (idempotent)."""
        if self.balance <= 0:  # the reference: available_balance <= 0 means chat fails with a quota error
            raise _fault_error(Fault("quota"), "", 0, 0)  # and consumes no scripted fault
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

        parsed = _parse_body(raw)
        _note_deprecated(parsed, record)
        request = self._check_chat(parsed)
        request.cached_tokens = self._cached_tokens(_bearer_key(record.headers), request)
        reply = self._compose(request, fault)
        body = self._sse_body(request, reply, fault) if request.stream else self._json_body(request, reply, fault)
        if kind == "drip":
            # The same bytes, one a second: for read timeouts and cancellation while a reply trickles in.
            data = b"".join(chunk for _, chunk in body.steps)
            body.steps = [(0.0 if i == 0 else DRIP_INTERVAL, data[i : i + 1]) for i in range(len(data))]
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
            if body.complete:
                # The client may have the whole reply now and fire the next request at once, on another
                # connection, while this one still tidies up: free the slot before anything can yield.
                release()
        finally:
            await conn.stop_watching()
        if not body.complete:
            return False  # "cut": close mid-body, without [DONE] or the end of the chunked framing
        await conn.send(h11.EndOfMessage())
        return True

    def _cached_tokens(self, key: str, request: _ChatRequest) -> int:
        text = prompt_text(request.messages)
        with self._lock:
            return self._cache.lookup_and_store(
                key, request.model, text, request.prompt_tokens, time.monotonic(), self.cache_ttl
            )

    def _scripted_error(self, fault: Fault, body: dict) -> _ApiError:
        named = body.get("model")
        model = named if isinstance(named, str) else SWITCHABLE_THINKING_MODEL
        entry = next((m for m in self.models if m.get("id") == model), {})
        context_length = int(entry.get("context_length", 262144))
        given = body.get("messages")
        messages = given if isinstance(given, list) else []
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
                raise _invalid(
                    f"Invalid request: the message at position {index} with role '{message['role']}' must not be empty"
                )
        tools = _check_tools(body.get("tools"), messages)
        _check_images(model, entry, messages)
        partial = _check_partial(messages, body)

        thinks = check_model_rules(model, rules_for(entry), body)

        tool_choice = body.get("tool_choice")
        if tool_choice is not None and tool_choice not in ("auto", "none"):
            if isinstance(tool_choice, dict) and thinks:
                raise _invalid("tool_choice 'specified' is incompatible with thinking enabled")
            label = "specified" if isinstance(tool_choice, dict) else tool_choice
            raise _invalid(f"tool_choice '{label}' is not supported")

        if thinks:
            for index, message in enumerate(messages):
                # Present but empty is fine (it must be replayed as it came); missing is the 400.
                if (
                    message.get("role") == "assistant"
                    and message.get("tool_calls")
                    and not isinstance(message.get("reasoning_content"), str)
                ):
                    raise _invalid(
                        "thinking is enabled but reasoning_content is missing in assistant tool call "
                        f"message at index {index}"
                    )

        max_tokens = _completion_limit(body)
        prompt_tokens = estimate_tokens(messages)
        context_length = int(entry.get("context_length", 262144))
        if prompt_tokens + (max_tokens or 0) > context_length:
            raise _context_too_long(context_length, prompt_tokens + (max_tokens or 0))

        stream_options = body.get("stream_options")
        return _ChatRequest(
            model=model,
            messages=messages,
            thinking=thinks,
            stream=body.get("stream") is True,
            include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
            max_tokens=max_tokens,
            prompt_tokens=prompt_tokens,
            tools=tools,
            tool_choice=tool_choice,
            partial=partial,
        )

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

    def _first_delay(self, fault: Optional[Fault], request: Optional[_ChatRequest] = None) -> float:
        if fault is not None and fault.kind == "slow_first":
            return fault.delay
        if request is not None and request.partial and self.completion_delay >= 0:
            return self.completion_delay
        return self.first_token_delay

    def _completion(self, request: _ChatRequest, reply: _Reply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [call.to_message(i) for i, call in enumerate(reply.tool_calls)]
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": reply.usage(request),
        }

    def _json_body(self, request: _ChatRequest, reply: _Reply, fault: Optional[Fault]) -> _Body:
        data = _dumps(self._completion(request, reply))
        kind, delay = (fault.kind if fault else None), self._first_delay(fault, request)
        if kind == "not_json":
            data = b"{not json"
        if kind == "cut":  # announce the full length, send half of it, close
            return _Body(
                "application/json", [(delay, data[: len(data) // 2])], complete=False, length=len(data), first=0
            )
        return _Body("application/json", [(delay, data)], length=len(data), first=0)

    def _sse_body(self, request: _ChatRequest, reply: _Reply, fault: Optional[Fault]) -> _Body:
        """The SSE events of a streamed reply, each with the delay before it."""
        kind = fault.kind if fault else None
        chunk_id, created = _completion_id(), int(time.time())
        top_level_usage = self.usage_placement in ("final", "both") or request.include_usage
        usage = reply.usage(request)

        def chunk(delta: dict, finish_reason: Optional[str] = None, with_usage: bool = False) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            if with_usage:
                choice["usage"] = usage
            event: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request.model,
                "choices": [choice],
            }
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
            head, tail = content[: fault.after_chunks], content[fault.after_chunks :]
            if kind == "cut":
                content, complete = head, False
            else:
                content = head + [_sse(b"{not json")] + tail

        tokens = reasoning + content  # reasoning always precedes content
        steps: list[Step] = [(0.0, chunk({"role": "assistant", "content": ""}))]
        steps += [
            (self._first_delay(fault, request) if i == 0 else self.token_delay, data) for i, data in enumerate(tokens)
        ]
        if not complete:
            return _Body("text/event-stream", steps, complete=False, first=1 if len(steps) > 1 else None)
        steps.append(
            (
                0.0 if tokens else self._first_delay(fault, request),
                chunk({}, reply.finish_reason, with_usage=self.usage_placement in ("choice", "both")),
            )
        )
        if top_level_usage:
            steps.append(
                (
                    0.0,
                    _sse(
                        {
                            "id": chunk_id,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": request.model,
                            "choices": [],
                            "usage": usage,
                        }
                    ),
                )
            )
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
                names = {
                    "firstTokenDelay": "first_token_delay",
                    "tokenDelay": "token_delay",
                    "chunkChars": "chunk_chars",
                    "usagePlacement": "usage_placement",
                    "balance": "balance",
                    "tier": "tier",
                    "rpmWindow": "rpm_window",
                    "cacheTtl": "cache_ttl",
                    "completionDelay": "completion_delay",
                }
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


def _note_deprecated(body: dict, record: Recorded) -> None:
    """Warn (once a request) and record that it used `max_tokens`, which Moonshot documents as deprecated."""
    if "max_tokens" in body:
        record.deprecated.append("max_tokens")
        log.warning("fake-moonshot: max_tokens is deprecated, send max_completion_tokens")


def _completion_limit(body: dict) -> Optional[int]:
    """The reply token limit: `max_completion_tokens`, else the deprecated `max_tokens` (both still checked)."""
    limits = {name: body.get(name) for name in ("max_completion_tokens", "max_tokens")}
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise _invalid(f"invalid {name}: must be a positive integer")
    first = limits["max_completion_tokens"]
    return first if first is not None else limits["max_tokens"]


def _bearer_key(headers: dict[str, str]) -> str:
    """The key of an `Authorization: Bearer <key>` header, or "" without one."""
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


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
    parser.add_argument("--balance", type=float, default=49.58894, help="available balance; <= 0 refuses chat")
    parser.add_argument(
        "--tier", type=int, choices=sorted(TIERS), default=None, help="enforce a rate-limit tier (default: none)"
    )
    parser.add_argument("--rpm-window", type=float, default=60.0, metavar="S", help="the RPM window (default 60)")
    parser.add_argument(
        "--cache-ttl", type=float, default=300.0, metavar="S", help="prefix cache lifetime; 0 disables (default 300)"
    )
    parser.add_argument(
        "--completion-delay",
        type=float,
        default=-1.0,
        metavar="S",
        help="first-token delay of completions (partial mode); default: as --first-token-delay",
    )
    parser.add_argument(
        "--key",
        action="append",
        dest="keys",
        metavar="K",
        help="a valid API key (repeatable; default sk-fake-valid-key)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fake = FakeMoonshot(
        args.host,
        args.port,
        valid_keys=args.keys or ("sk-fake-valid-key",),
        first_token_delay=args.first_token_delay,
        token_delay=args.token_delay,
        chunk_chars=args.chunk_chars,
        usage_placement=args.usage_placement,
        balance=args.balance,
        tier=args.tier,
        rpm_window=args.rpm_window,
        cache_ttl=args.cache_ttl,
        completion_delay=args.completion_delay,
    )

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
