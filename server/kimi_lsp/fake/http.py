"""The HTTP/1.1 plumbing (h11 on asyncio streams) the fake serves on."""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import h11

from kimi_lsp.fake.faults import MAX_BODY_BYTES


@dataclass
class Recorded:
    """One request as the fake saw it (control calls under /_fake/ are not recorded)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Optional[dict]  # the JSON object sent, or None (no body, not JSON, or not an object)
    time: float  # time.monotonic() when the request had been read
    disconnected_early: bool = False  # the client hung up before the reply was complete ([DONE] for streams)
    status: Optional[int] = None  # the HTTP status answered, once the reply has started
    error_type: Optional[str] = None  # the error body's type (e.g. "rate_limit_reached_error"), if any
    deprecated: list[str] = field(default_factory=list)  # deprecated fields the request used ("max_tokens")

    @property
    def model(self) -> Optional[str]:
        model = (self.body or {}).get("model")
        return model if isinstance(model, str) else None

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "disconnectedEarly": self.disconnected_early,
            "model": self.model,
            "time": self.time,
            "status": self.status,
            "errorType": self.error_type,
            "deprecated": list(self.deprecated),
        }


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
        self.record: Optional[Recorded] = None  # the request being answered: its status is noted on it
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
        if self.record is not None:
            self.record.status = status

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
            while precise and time.monotonic() < deadline and not self.gone.is_set():  # noqa: ASYNC110 (sub-ms)
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
