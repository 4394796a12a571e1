"""LSP over stdin/stdout without pygls' thread hand-offs: stdin is read by the event loop itself, and what is
written to stdout in one loop turn leaves in one write (a fast stream sends many small notifications).

Measured in docs/benchmarks.md (B4): pygls' thread-pool reader made code actions wait behind busy streams.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any, BinaryIO, Optional

from pygls.io_ import run_async

log = logging.getLogger(__name__)


class CoalescingWriter:
    """pygls' writer interface; a client that reads slowly never blocks the loop (the pipe transport buffers)."""

    def __init__(self, stdout: BinaryIO) -> None:
        self._stdout = stdout
        self._transport: Optional[asyncio.WriteTransport] = None
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
        else:
            self._stdout.write(data)
            self._stdout.flush()


class _Reader:
    """asyncio's StreamReader with pygls' reader contract: b"" at the end instead of an exception."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            return b""

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""


def serve(ls: Any, stdin: Optional[BinaryIO] = None, stdout: Optional[BinaryIO] = None) -> None:
    stdin = stdin or sys.stdin.buffer
    writer = CoalescingWriter(stdout or sys.stdout.buffer)
    ls.protocol.set_writer(writer)
    ls._stop_event = threading.Event()

    async def main() -> None:
        await writer.attach()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 27, loop=loop)  # documents can be large
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stdin)
        await run_async(stop_event=ls._stop_event, reader=_Reader(reader), protocol=ls.protocol, logger=log,
                        error_handler=ls.report_server_error)
        writer.close()

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("the editor closed the connection; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        ls.shutdown()
