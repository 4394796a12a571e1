"""Sits between a real editor and kimi-lsp and records every JSON-RPC message both ways, so a test can assert on
what the editor really sent (initialize capabilities, the range of a selection) and what it was told.

Usage: python lsp_tap.py LOG.jsonl -- SERVER [ARGS...]. Each log line is
{"dir": "in"|"out", "t": seconds, "msg": {...}}; "in" is editor -> server. The server's stderr passes through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import IO, Optional


def read_message(stream: IO[bytes]) -> Optional[bytes]:
    """One Content-Length framed body, or None at end of stream."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        return b""
    body = b""
    while len(body) < length:
        chunk = stream.read(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def main() -> int:
    log_path, sep, *server = sys.argv[1:]
    assert sep == "--" and server, __doc__
    proc = subprocess.Popen(server, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lock = threading.Lock()
    began = time.monotonic()
    log = open(log_path, "a", encoding="utf-8")

    def record(direction: str, body: bytes) -> None:
        try:
            msg = json.loads(body)
        except ValueError:
            msg = {"unparsed": body.decode("utf-8", "replace")}
        with lock:
            log.write(json.dumps({"dir": direction, "t": round(time.monotonic() - began, 3), "msg": msg}) + "\n")
            log.flush()

    def pump(src: IO[bytes], dst: IO[bytes], direction: str) -> None:
        try:
            while (body := read_message(src)) is not None:
                record(direction, body)
                dst.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                dst.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        finally:
            try:
                dst.close()
            except OSError:
                pass

    to_server = threading.Thread(target=pump, args=(sys.stdin.buffer, proc.stdin, "in"), daemon=True)
    to_editor = threading.Thread(target=pump, args=(proc.stdout, sys.stdout.buffer, "out"), daemon=True)
    to_server.start()
    to_editor.start()
    code = proc.wait()
    to_editor.join(2)
    return code


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    os._exit(status)  # the stdin pump may still be blocked in a read: a normal exit would abort on it
