"""LSP over stdin/stdout (and the TCP debug mode) without pygls' thread hand-offs: input is read by the event loop
itself, and what is written in one loop turn leaves in one write (a fast stream sends many small notifications).

Measured in docs/benchmarks.md (B4): pygls' thread-pool reader made code actions wait behind busy streams.

Framing is parsed here rather than by pygls' reader, which goes deaf for good after one malformed frame. On stdio
the reader resynchronises at the next `Content-Length` header (LF-only header lines are accepted too); on TCP,
which anything on the machine can reach (a web page's POST, say), a connection that does not speak LSP framing
and start with `initialize` is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, Optional

from pygls.exceptions import JsonRpcInvalidRequest

log = logging.getLogger(__name__)

MAX_BODY = 2**28  # bytes; a larger Content-Length is junk (documents are far smaller)
MAX_HEADER_LINE = 65536  # bytes; a longer line without a newline is junk, kept only for its tail
_HEADER = re.compile(rb"([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*?)[ \t]*")
_LENGTH = re.compile(rb"content-length:", re.IGNORECASE)
# A header line with a raw line break cannot occur inside a JSON body: seen there, the declared length was wrong.
_NEXT_FRAME = re.compile(rb"Content-Length:[ \t]*\d+[ \t]*\r?\n")


class CoalescingWriter:
    """pygls' writer interface; a client that reads slowly never blocks the loop (the transport buffers)."""

    def __init__(self, stdout: Optional[BinaryIO] = None, transport: Optional[asyncio.WriteTransport] = None) -> None:
        self._stdout = stdout
        self._transport = transport
        self._buf = bytearray()
        self._scheduled = False

    async def attach(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.connect_write_pipe(asyncio.Protocol, self._stdout)
        except (ValueError, OSError):  # a regular file or an odd tty: plain blocking writes
            self._transport = None

    def write(self, data: bytes) -> None:
        self._buf += data
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._scheduled = True
        except RuntimeError:  # no running loop (shutting down): write now
            self.flush()

    def close(self) -> None:
        self.flush()
        if self._transport is not None:
            self._transport.close()

    def flush(self) -> None:
        """Writes what is buffered now (the first token of an answer must not wait for the loop turn to end)."""
        self._scheduled = False
        if not self._buf:
            return
        data, self._buf = bytes(self._buf), bytearray()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
        elif self._stdout is not None and not self._stdout.closed:  # closed: the session has ended
            self._stdout.write(data)
            self._stdout.flush()


class FrameReader(asyncio.Protocol):
    """Cuts the byte stream into LSP frames and hands each body to the protocol, as pygls' reader does
    (`json.loads` with the protocol's object hook, then `handle_message`). A bad frame is logged and skipped,
    never answered with a crash or silence; `strict` closes the connection instead."""

    def __init__(self, protocol: Any, strict: bool = False) -> None:
        self.protocol = protocol
        self.strict = strict
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()  # the exit code, at the end
        self.transport: Optional[asyncio.BaseTransport] = None
        self._buf = bytearray()
        self._length: Optional[int] = None  # the current header block's valid Content-Length
        self._in_headers = False  # some header line of the current block was read
        self._body: Optional[int] = None  # reading a body of this many bytes
        self._scanned = 0  # how much of the pending body was searched for a next frame

    # -- asyncio.Protocol ------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            self._parse()
        except Exception:  # a bug here must not stop the reading
            log.exception("could not read the editor's input; skipping it")
            self._buf.clear()
            self._reset()

    def eof_received(self) -> bool:
        self.finish(0)
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.finish(0)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    # -- framing ---------------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._length, self._in_headers, self._body, self._scanned = None, False, None, 0

    def _parse(self) -> None:
        buf, pos = self._buf, 0
        while not self.done.done():
            if self._body is not None:
                start, end = pos, pos + self._body
                if len(buf) < end:  # still arriving, unless the declared length was too large
                    cut = self._frame_in(start + max(0, self._scanned - 32), len(buf))  # (a header may straddle reads)
                    self._scanned = len(buf) - start
                    if cut is None:
                        break
                    self._bad("a Content-Length past the end of its message")
                    end = cut
                self._reset()
                if self.done.done():
                    break
                if (
                    not self._dispatch(bytes(buf[start:end]))
                    and not self.done.done()
                    and (cut := self._frame_in(start, end)) is not None
                ):
                    log.warning("skipped a Content-Length past the end of its message")  # it ran into the next frame
                    self._dispatch(bytes(buf[start:cut]))
                    end = cut
                pos = end
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if len(buf) - pos > MAX_HEADER_LINE:  # junk: keep the tail, where a header may begin
                    self._bad("a line too long for a header")
                    pos = len(buf) - 64
                break
            line = bytes(buf[pos:nl]).rstrip(b"\r")
            pos = nl + 1
            self._header_line(line)
        del buf[:pos]

    def _header_line(self, line: bytes) -> None:
        if not line:
            if self._length is not None:
                self._body = self._length
            elif self._in_headers:
                self._bad("a frame without a valid Content-Length")
            self._length, self._in_headers = None, False  # (blank lines between frames are ignored)
            return
        m = _HEADER.fullmatch(line)
        if m is None:
            starts = [h.start() for h in _LENGTH.finditer(line)]
            if self.strict or not starts:
                self._junk(line)
                return
            # the end of a frame whose length was too short (or junk), then the next frame's header
            self._junk(line[: starts[-1]])
            if self.done.done():
                return
            line = line[starts[-1] :]
            m = _HEADER.fullmatch(line)
            self._length, self._in_headers = None, False
            if m is None:
                return
        self._in_headers = True
        if m.group(1).lower() == b"content-length":
            value = m.group(2)
            if value.isdigit() and int(value) <= MAX_BODY:
                self._length = int(value)
            else:
                self._length = None
                self._bad(f"a bad Content-Length {value[:20]!r}")

    def _frame_in(self, start: int, end: int) -> Optional[int]:
        """Where a frame header begins in buf[start:end], inside a body (so its Content-Length was too large)."""
        buf = self._buf
        while (at := buf.find(b"Content-Length:", start, end)) >= 0:
            if _NEXT_FRAME.match(buf, at):
                return at
            start = at + 1
        return None

    def _junk(self, data: bytes) -> None:
        if not data.strip():
            return
        if self.strict:
            self._bad("not an LSP frame")
            return
        log.warning("skipped %d bytes of input that are not an LSP frame", len(data))
        if data.lstrip().startswith(b"{"):  # the body of a frame whose header was bad: answer it if it asks
            try:
                message = json.loads(data)
            except (ValueError, RecursionError):
                return
            if isinstance(message, dict) and isinstance(message.get("id"), (str, int)) and "method" in message:
                error = JsonRpcInvalidRequest("the request's frame had no valid Content-Length header")
                self.protocol._send_response(message["id"], error=error.to_response_error())

    def _bad(self, what: str) -> None:
        if self.strict:
            log.warning("closing a connection that sent %s", what)
            self.close()
        else:
            log.warning("skipped %s", what)

    def _dispatch(self, body: bytes) -> bool:
        """Hands one body to the protocol; False if it is not JSON."""
        try:
            message = json.loads(body, object_hook=self.protocol.structure_message)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
            self._bad(f"a frame whose body is not JSON ({type(exc).__name__})")
            return False
        except Exception:  # pygls could not decode it (already logged there)
            log.warning("skipped a message that could not be decoded")
            return True
        try:
            self.protocol.handle_message(message)
        except Exception:  # logged here, never sent to the editor
            log.exception("failed to handle a message")
        if self.strict and not self.protocol.initialize_seen:
            self._bad("a first message that is not initialize")
        return True

    def close(self) -> None:
        writer = self.protocol.writer
        if writer is not None:
            writer.flush()  # what was answered leaves before the connection closes
        if self.transport is not None:
            self.transport.close()
        self.finish(0)


def serve(ls: Any, stdin: Optional[BinaryIO] = None, stdout: Optional[BinaryIO] = None) -> int:
    """Serves one session on stdin/stdout; the process's exit code (LSP: 0 after shutdown, 1 without)."""
    stdin = stdin or sys.stdin.buffer
    writer = CoalescingWriter(stdout or sys.stdout.buffer)
    ls.protocol.set_writer(writer)

    async def main() -> int:
        await writer.attach()
        loop = asyncio.get_running_loop()
        reader = FrameReader(ls.protocol)
        ls.protocol.on_exit = reader.finish
        await loop.connect_read_pipe(lambda: reader, stdin)
        code = await reader.done
        writer.close()
        return code

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        log.error("the editor closed the connection; shutting down")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        ls.shutdown()


class _TcpSession(FrameReader):
    """One TCP connection: a fresh server of its own; when the client leaves, its work stops, the listener stays."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.ls = factory()
        super().__init__(self.ls.protocol, strict=True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ls.protocol.set_writer(CoalescingWriter(transport=transport))  # type: ignore[arg-type]
        self.ls.protocol.on_exit = lambda code: self.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        super().connection_lost(exc)
        self._ending = asyncio.ensure_future(self.ls.end_tasks())  # kept: the loop holds tasks only weakly


def serve_tcp(factory: Callable[[], Any], host: str, port: int) -> int:
    """The TCP debug mode: one fresh server per connection, until interrupted."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _TcpSession(factory), host, port)
        for sock in server.sockets:
            log.warning("kimi-lsp listening on %s:%s (debug mode)", *sock.getsockname()[:2])
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0
