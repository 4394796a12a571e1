"""Helpers for the fault, fuzz and soak suites: raw JSON-RPC requests, a recorder of everything the server says
(every JSON-RPC message it sends, its stderr, its log file), and a few process probes (/proc)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from harness import FAKE_KEY, Editor, editor


class Recorder:
    """Records what the server emits towards the editor: every JSON-RPC message as parsed (the trace), its
    stderr (taking over pytest-lsp's forwarder) and, if given, its log file. `mark()` / `since(mark)` slice it
    so a table-driven test can check one row at a time."""

    def __init__(self, ed: Editor, log_file: Optional[Path] = None) -> None:
        self.ed = ed
        self.log_file = log_file
        self.trace: list[dict] = []
        self.stderr = bytearray()
        protocol = ed.client.protocol
        original = protocol.structure_message

        def recording(data: dict) -> Any:
            if isinstance(data, dict) and "jsonrpc" in data:
                self.trace.append(data)  # nested objects are still plain dicts here (object_hook is bottom-up)
            return original(data)

        protocol.structure_message = recording
        client = ed.client
        forwarder = getattr(client, "_stderr_forwarder", None)
        server = getattr(client, "_server", None)
        if forwarder is not None and server is not None and server.stderr is not None:
            forwarder.cancel()
            client._stderr_forwarder = asyncio.ensure_future(self._read_stderr(server))

    async def _read_stderr(self, server: asyncio.subprocess.Process) -> None:
        while line := await server.stderr.readline():
            self.stderr += line

    def mark(self) -> dict:
        ed = self.ed
        return {
            "trace": len(self.trace),
            "stderr": len(self.stderr),
            "messages": len(ed.client.messages),
            "log_messages": len(ed.client.log_messages),
            "stream": len(ed.stream),
            "applied": len(ed.applied),
            "log": self.log_file.stat().st_size if self.log_file and self.log_file.exists() else 0,
        }

    def text_since(self, m: dict) -> str:
        ed = self.ed
        parts = [
            json.dumps(self.trace[m["trace"] :], default=repr),
            self.stderr[m["stderr"] :].decode("utf-8", "replace"),
            repr(ed.client.messages[m["messages"] :]),
            repr(ed.client.log_messages[m["log_messages"] :]),
            repr(ed.stream[m["stream"] :]),
            repr(ed.client.diagnostics),
            repr(ed.client.progress_reports),
            repr(ed.client.shown_documents),
        ]
        if self.log_file and self.log_file.exists():
            with open(self.log_file, "rb") as fh:
                fh.seek(m["log"])
                parts.append(fh.read().decode("utf-8", "replace"))
        return "\n".join(parts)

    def assert_no_key(self, m: dict, *extra: Any) -> None:
        seen = self.text_since(m) + repr(extra)
        assert FAKE_KEY not in seen, f"the API key leaked: ...{_around(seen, FAKE_KEY)}..."
        # Not even a recognisable piece of it (a truncated header, a masked key that keeps the tail).
        assert "fake-valid" not in seen, f"part of the API key leaked: ...{_around(seen, 'fake-valid')}..."

    def messages_since(self, m: dict) -> list[lsp.ShowMessageParams]:
        return self.ed.client.messages[m["messages"] :]


def _around(text: str, needle: str, width: int = 200) -> str:
    i = text.find(needle)
    return text[max(0, i - width) : i + len(needle) + width]


async def raw_request(ed: Editor, method: str, params: Any, timeout: float = 15) -> Any:
    """Sends a JSON-RPC request with arbitrary (untyped, possibly junk) params. Returns the raw result or
    raises the JsonRpcException the server answered with; a missing answer fails as a TimeoutError."""
    protocol = ed.client.protocol
    msg_id = f"raw-{uuid.uuid4().hex[:12]}"
    future: concurrent.futures.Future = concurrent.futures.Future()
    protocol._request_futures[msg_id] = future
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    finally:
        protocol._request_futures.pop(msg_id, None)


def raw_notify(ed: Editor, method: str, params: Any) -> None:
    ed.client.protocol._send_data({"jsonrpc": "2.0", "method": method, "params": params})


def is_well_formed_error(exc: BaseException) -> bool:
    return isinstance(exc, JsonRpcException) and isinstance(getattr(exc, "code", None), int)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_process(ed: Editor) -> asyncio.subprocess.Process:
    return ed.client._server


def alive(ed: Editor) -> bool:
    proc = server_process(ed)
    return proc is not None and proc.returncode is None


def rss_kb(pid: int) -> int:
    try:
        import psutil  # type: ignore[import-not-found]

        return psutil.Process(pid).memory_info().rss // 1024
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


@asynccontextmanager
async def safe_editor(profile: str, root: Path, settings: Optional[dict] = None, **kw: Any):
    """harness.editor, but a server that fails its shutdown cannot hang the suite: pytest-lsp's stop() waits
    for the process forever, so after 15 s the process is killed."""
    cm = editor(profile, root, settings, **kw)
    ed = await cm.__aenter__()
    try:
        yield ed
    finally:
        await close_editor(ed, cm)


async def close_editor(ed: Editor, cm: Any = None, grace: float = 15) -> None:
    proc = server_process(ed)
    task = asyncio.ensure_future(cm.__aexit__(None, None, None) if cm is not None else ed.client.stop())
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        if proc is not None and proc.returncode is None:
            proc.kill()
        await asyncio.wait({task}, timeout=5)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()
