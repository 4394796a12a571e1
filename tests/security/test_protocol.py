"""The protocol edge (issue #11): framing that cannot make the server deaf, server->client requests that always
resolve, the lifecycle order, the TCP debug mode, and what leaves the process (valid JSON, redacted).

Most cases drive the real server process over raw pipes with a small JSON-RPC client written here (the test
chooses every byte it sends; every frame the server sends back is parsed strictly)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest

from fault_helpers import closed_port
from harness import editor, rng, server_env
from kimi_lsp.fake import Fault

CODE = "def f(x):\n    return x * 2\n\n\nprint(f(2))\n"
SHAPED = "sk-" + "Zq7" * 12  # shaped like a Moonshot key: redacted wherever it appears
NO_ANSWER = object()  # an `answers` entry that leaves the server's request unanswered


def frame(body: Any) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def request(msg_id: Any, method: str, params: Any = None) -> dict:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


def status(msg_id: Any) -> dict:
    return request(msg_id, "workspace/executeCommand", {"command": "kimi.status", "arguments": [{}]})


def _strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"the server sent {name}, which is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


class Raw:
    """The real server over raw pipes. Server->client requests are answered from `answers` (method -> a raw
    JSON-RPC answer: {"result": ...} / {"error": ...}, or a callable of the params returning one, or NO_ANSWER);
    unlisted ones get {"result": null}. Notifications are kept in `notes`."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._buf = bytearray()
        self.notes: list[dict] = []
        self.asked: list[dict] = []
        self.answers: dict[str, Any] = {}

    @classmethod
    async def start(cls, tmp_path: Path, *args: str, env: Optional[dict] = None) -> Raw:
        err = open(tmp_path / "stderr.txt", "wb")  # a full stderr pipe must not stall the server
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kimi_lsp",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env or server_env(),
        )
        err.close()
        return cls(proc)

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def send(self, msg: dict) -> None:
        self.write(frame(msg))

    async def _read_frame(self) -> dict:
        """One frame, checked strictly: CRLF headers, an exact Content-Length, a JSON object."""
        while b"\r\n\r\n" not in self._buf:
            chunk = await self.proc.stdout.read(65536)
            if not chunk:
                raise EOFError("the server closed its output")
            self._buf += chunk
        head, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        length = int(headers[b"Content-Length"])
        while len(rest) < length:
            chunk = await self.proc.stdout.read(65536)
            if not chunk:
                raise EOFError("the server closed its output mid-frame")
            rest += chunk
        self._buf = bytearray(rest[length:])
        msg = _strict_json(rest[:length])
        assert isinstance(msg, dict) and msg.get("jsonrpc") == "2.0", msg
        return msg

    def _answer(self, msg: dict) -> None:
        self.asked.append(msg)
        answer = self.answers.get(msg["method"], {"result": None})
        if callable(answer):
            answer = answer(msg.get("params"))
        if answer is NO_ANSWER:
            return
        self.write(frame({"jsonrpc": "2.0", "id": msg["id"], **answer}))

    async def pump(self, until: Callable[[dict], bool], timeout: float) -> dict:
        """Reads frames (answering the server's requests) until one satisfies `until`."""

        async def loop() -> dict:
            while True:
                msg = await self._read_frame()
                if "method" in msg and "id" in msg:
                    self._answer(msg)
                elif "method" in msg:
                    self.notes.append(msg)
                if until(msg):
                    return msg

        return await asyncio.wait_for(loop(), timeout)

    async def response(self, msg_id: Any, timeout: float = 5) -> dict:
        return await self.pump(lambda m: "method" not in m and m.get("id") == msg_id, timeout)

    async def call(self, msg: dict, timeout: float = 5) -> dict:
        self.send(msg)
        return await self.response(msg["id"], timeout)

    async def initialize(
        self, capabilities: Optional[dict] = None, options: Optional[dict] = None, root: Optional[Path] = None
    ) -> dict:
        params = {
            "processId": None,
            "capabilities": capabilities or {},
            "initializationOptions": options,
            "rootUri": root.as_uri() if root else None,
        }
        r = await self.call(request("init", "initialize", params), timeout=20)
        assert "capabilities" in r["result"], r
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        return r

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@pytest.fixture
async def raw(tmp_path):
    servers: list[Raw] = []

    async def start(*args: str, env: Optional[dict] = None) -> Raw:
        servers.append(await Raw.start(tmp_path, *args, env=env))
        return servers[-1]

    yield start
    for s in servers:
        await s.stop()


# -- 7: one malformed frame must not make the server deaf ---------------------------------------------------------

BAD = json.dumps(status("bad")).encode()
BAD_FRAMES = {
    "length not a number": b"Content-Length: abc\r\n\r\n" + BAD,
    "negative length": b"Content-Length: -5\r\n\r\n" + BAD,
    "no length": b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + BAD,
    "length too small": b"Content-Length: %d\r\n\r\n" % (len(BAD) - 10) + BAD,
    "length too large": b"Content-Length: %d\r\n\r\n" % (len(BAD) + 100) + BAD,
    "absurd length": b"Content-Length: 99999999999999999999\r\n\r\n" + BAD,
    "zero length": b"Content-Length: 0\r\n\r\n",
    "not JSON": frame(b"hello, world"),
    "not UTF-8": frame(b'{"jsonrpc": "2.0", "method": "\xff\xfe"}'),
    "JSON array": frame(b"[1, 2, 3]"),
    "JSON number": frame(b"5"),
    "JSON null": frame(b"null"),
    "nested too deep": frame(b"[" * 100000),
    "an HTTP request line": b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "binary junk": bytes(range(256)) * 4,
    "a response to nothing": frame({"jsonrpc": "2.0", "id": "nobody-asked", "result": {"x": 1}}),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
async def test_bad_frame_then_a_good_request_is_answered(raw, case):
    s = await raw()
    await s.initialize()
    # the bad bytes alone, then the good request in a later write; then both in one write
    s.write(BAD_FRAMES[case])
    await asyncio.sleep(0.1)
    r = await s.call(status("after-1"))
    assert r["result"]["version"], r
    s.write(BAD_FRAMES[case] + frame(status("after-2")))
    r = await s.response("after-2")
    assert r["result"]["version"], r
    assert s.proc.returncode is None


async def test_lf_only_headers_are_accepted(raw):
    s = await raw()
    await s.initialize()
    body = json.dumps(status("lf")).encode()
    s.write(b"Content-Length: %d\n\n" % len(body) + body)
    r = await s.response("lf")
    assert r["result"]["version"], r


async def test_a_request_without_jsonrpc_is_answered_with_an_error(raw):
    s = await raw()
    await s.initialize()
    r = await s.call(
        {
            "id": "no-version",
            "method": "workspace/executeCommand",
            "params": {"command": "kimi.status", "arguments": [{}]},
        }
    )
    assert r["error"]["code"] == -32600, r
    r = await s.call({"jsonrpc": "1.0", "id": "old-version", "method": "shutdown"})
    assert r["error"]["code"] == -32600, r
    assert (await s.call(status("after")))["result"]["version"]


# -- 12: junk answers from the editor never leave a kimi.* request unanswered --------------------------------------

EDIT_CAPS = {"workspace": {"applyEdit": True, "workspaceEdit": {"documentChanges": True}}}
JUNK_ANSWERS = {
    "null": {"result": None},
    "a number": {"result": 5},
    "a list": {"result": []},
    "a string": {"result": "yes"},
    "an object without applied": {"result": {}},
    "an error": {"error": {"code": -32603, "message": "the editor broke"}},
    "an error without a code": {"error": {"message": "?"}},
    "an error that is a number": {"error": 5},
    "a null error": {"error": None},
}


async def _refactor_session(raw, fake, tmp_path, answer: Any, env: Optional[dict] = None) -> tuple[Raw, str]:
    s = await raw(env=env)
    s.answers["workspace/applyEdit"] = answer
    await s.initialize(
        EDIT_CAPS, {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final"}, tmp_path
    )
    uri = (tmp_path / "a.py").as_uri()
    s.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": CODE}},
        }
    )
    return s, uri


def _refactor(uri: str, msg_id: str = "refactor") -> dict:
    return request(
        msg_id,
        "workspace/executeCommand",
        {
            "command": "kimi.refactor",
            "arguments": [{"uri": uri, "range": rng(0, 0, 2, 0), "instruction": "rename x to y"}],
        },
    )


@pytest.mark.parametrize("junk", list(JUNK_ANSWERS))
async def test_junk_answer_to_apply_edit_ends_the_request(raw, fake, tmp_path, junk):
    s, uri = await _refactor_session(raw, fake, tmp_path, JUNK_ANSWERS[junk])
    r = await s.call(_refactor(uri), timeout=10)
    assert r["result"]["applied"] is False and "edit" in r["result"]["message"], r
    assert [m["method"] for m in s.asked].count("workspace/applyEdit") == 1
    assert (await s.call(status("after")))["result"]["version"]  # and the server serves on


async def test_unanswered_apply_edit_times_out_with_a_clear_message(raw, fake, tmp_path):
    env = server_env(KIMI_LSP_ASK_TIMEOUT="0.5")  # the edit waits 3x that: a user may be looking at a preview
    s, uri = await _refactor_session(raw, fake, tmp_path, NO_ANSWER, env=env)
    started = time.monotonic()
    r = await s.call(_refactor(uri), timeout=10)
    assert r["result"]["applied"] is False, r
    assert "the editor did not answer the edit request" in r["result"]["message"], r
    assert 1.2 < time.monotonic() - started < 6


@pytest.mark.parametrize("junk", ["null", "a number", "an error that is a number"])
async def test_junk_answer_to_show_document_falls_back_to_a_message(raw, fake, tmp_path, junk):
    s = await raw()
    s.answers["window/showDocument"] = JUNK_ANSWERS[junk]
    await s.initialize(
        {"window": {"showDocument": {"support": True}}}, {"baseUrl": fake.base_url, "commandResult": "final"}, tmp_path
    )
    r = await s.call(
        request(
            "ask", "workspace/executeCommand", {"command": "kimi.ask", "arguments": [{"prompt": "what is a monad?"}]}
        ),
        timeout=10,
    )
    assert r["result"]["text"], r
    assert [m["method"] for m in s.asked] == ["window/showDocument"]
    shown = [n for n in s.notes if n["method"] == "window/showMessage"]
    assert shown and "monad" in shown[-1]["params"]["message"], s.notes


async def test_junk_answer_to_configuration_does_not_stall_a_request(raw, fake, tmp_path):
    s = await raw()
    s.answers["workspace/configuration"] = {"error": 5}
    await s.initialize(
        {"workspace": {"configuration": True}}, {"baseUrl": fake.base_url, "commandResult": "final"}, tmp_path
    )
    started = time.monotonic()
    r = await s.call(
        request("ask", "workspace/executeCommand", {"command": "kimi.ask", "arguments": [{"prompt": "hello?"}]}),
        timeout=10,
    )
    assert r["result"]["text"], r
    assert time.monotonic() - started < 3  # not the 5 s wait for an answer that was already there


# -- 13: lifecycle order -------------------------------------------------------------------------------------------


async def test_nothing_runs_before_initialize(raw, tmp_path):
    s = await raw()
    r = await s.call(status("early"))
    assert r["error"]["code"] == -32002 and "result" not in r, r
    uri = (tmp_path / "early.py").as_uri()
    s.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": CODE}},
        }
    )  # dropped
    await s.initialize()
    r = await s.call(request("lens", "textDocument/codeLens", {"textDocument": {"uri": uri}}))
    assert "result" in r, r
    r = await s.call(request("init-again", "initialize", {"processId": None, "capabilities": {}}))
    assert r["error"]["code"] == -32600, r
    assert (await s.call(status("after")))["result"]["version"]
    assert not [n for n in s.notes if n["method"] == "window/showMessage" and n["params"]["type"] == 1], s.notes
    assert (await s.call(request("bye", "shutdown")))["result"] is None
    r = await s.call(status("too-late"))
    assert r["error"]["code"] == -32600, r
    s.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(s.proc.wait(), 5) == 0


async def test_exit_right_behind_shutdown_is_a_clean_exit(raw, tmp_path):
    """A client may send exit without waiting for shutdown's answer: exit code 0 and no traceback."""
    s = await raw()
    await s.initialize()
    s.send(request("bye", "shutdown"))
    s.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(s.proc.wait(), 5) == 0
    assert b"Traceback" not in (tmp_path / "stderr.txt").read_bytes()


async def test_exit_before_initialize_ends_the_process_with_an_error(raw):
    s = await raw()
    s.send({"jsonrpc": "2.0", "method": "exit"})
    assert await asyncio.wait_for(s.proc.wait(), 5) == 1


# -- 13: what leaves the process -----------------------------------------------------------------------------------


def test_non_finite_numbers_leave_as_null():
    from kimi_lsp.lsp.app import create_server

    class Capture:
        data = b""

        def write(self, data: bytes) -> None:
            Capture.data += data

    ls = create_server()
    ls.protocol.set_writer(Capture())
    ls.protocol.notify(
        "kimi/stream", {"usage": {"prompt_tokens": float("nan"), "total": float("inf")}, "ok": [float("-inf"), 1.5]}
    )
    ls.protocol._send_response("r1", result={"usage": {"completion_tokens": float("nan")}})
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in Capture.data.split(b"Content-Length")[1:]]
    note, answer = (_strict_json(b) for b in bodies)
    assert note["params"] == {"usage": {"prompt_tokens": None, "total": None}, "ok": [None, 1.5]}
    assert answer == {"jsonrpc": "2.0", "id": "r1", "result": {"usage": {"completion_tokens": None}}}


async def test_tracebacks_stay_in_the_log(caplog):
    """No request of ours fails unexpectedly from the outside (test_fuzz tries), so a handler that does is added
    in-process: pygls would put the traceback into the error's data and the exception into a message."""
    from kimi_lsp.lsp.app import create_server

    out = bytearray()

    class Capture:
        def write(self, data: bytes) -> None:
            out.extend(data)

    ls = create_server()

    @ls.feature("kimi/boom")
    def boom(ls, params):
        raise ValueError("internal detail")

    @ls.feature("kimi/boomNote")
    def boom_note(ls, params):
        raise ValueError("internal detail")

    ls.protocol.set_writer(Capture())

    def receive(msg: dict) -> None:
        ls.protocol.handle_message(json.loads(json.dumps(msg), object_hook=ls.protocol.structure_message))

    receive(request("init", "initialize", {"processId": None, "capabilities": {}}))
    receive(request("boom", "kimi/boom", {}))
    receive({"jsonrpc": "2.0", "method": "kimi/boomNote", "params": {}})
    await asyncio.sleep(0.05)
    sent = [_strict_json(part.split(b"\r\n\r\n", 1)[1]) for part in bytes(out).split(b"Content-Length")[1:]]
    [answer] = [m for m in sent if m.get("id") == "boom"]
    assert answer["error"]["code"] == -32603 and "data" not in answer["error"], answer
    text = json.dumps(sent)
    assert "Traceback" not in text and "traceback" not in text and "test_protocol.py" not in text, text
    assert any(m.get("method") == "window/showMessage" for m in sent)  # the editor hears of the notification's failure
    assert "internal detail" in caplog.text and "Traceback" in caplog.text  # the log has everything


async def test_a_key_in_an_answer_or_a_log_line_is_redacted(raw, tmp_path):
    log = tmp_path / "server.log"
    s = await raw("--log-file", str(log))
    await s.initialize()
    r = await s.call(request("odd", f"kimi/{SHAPED}"))  # pygls echoes the method in its answer and its log
    assert r["error"]["code"] == -32601 and SHAPED not in json.dumps(r) and "[redacted]" in r["error"]["message"]
    await s.call(request("bye", "shutdown"))
    s.send({"jsonrpc": "2.0", "method": "exit"})
    await asyncio.wait_for(s.proc.wait(), 5)
    text = log.read_text()
    assert "[redacted]" in text and SHAPED not in text, text


async def test_a_key_echoed_by_the_model_reaches_neither_the_answer_nor_the_document(fake, tmp_path):
    async with editor(
        "neovim", tmp_path, {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final"}
    ) as ed:
        r = await ed.command("kimi.ask", {"prompt": f"is {SHAPED} a valid key?"})
        assert SHAPED not in json.dumps(r) and "[redacted]" in r["text"], r
        uri = ed.open("a.py", CODE)
        fake.script(Fault(kind="reply", content=f"def f(y):\n    key = '{SHAPED}'\n    return y * 2\n"))
        r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 2, 0), "instruction": "add a key"})
        assert r["applied"] is False and "key" in r["message"], r
        assert ed.applied == [] and ed.texts[uri] == CODE


# -- 13: the TCP debug mode ----------------------------------------------------------------------------------------


async def _listening(port: int, proc: asyncio.subprocess.Process, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.returncode is None, "the server exited"
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("the server never listened")


async def _read_all(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


async def test_tcp_refuses_a_non_loopback_host(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kimi_lsp",
        "--tcp",
        "--host",
        "0.0.0.0",
        "--port",
        str(closed_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=server_env(),
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2 and b"--allow-remote" in err, err


async def test_tcp_rejects_http_serves_again_after_a_disconnect(tmp_path):
    port = closed_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kimi_lsp",
        "--tcp",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=server_env(),
    )
    init = json.dumps(request(1, "initialize", {"processId": None, "capabilities": {}})).encode()
    try:
        await _listening(port, proc)
        # a browser's POST: rejected before anything runs, the connection closed
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(init)
            + init
        )
        assert await _read_all(r) == b""
        w.close()
        # a request before initialize: ServerNotInitialized, and the connection closed
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(frame(status(7)))
        answer = await _read_all(r)
        assert b'"code": -32002' in answer and b'"result"' not in answer, answer
        w.close()
        # a proper session, twice: the first client leaving does not stop the server
        for _ in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(frame(init))
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = _strict_json(await asyncio.wait_for(r.readexactly(length), 5))
            assert body["id"] == 1 and "capabilities" in body["result"], body
            w.close()
            await asyncio.sleep(0.2)
            assert proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_valid_frames_survive_any_split():
    """The resynchronisation never misreads a valid stream: frames (one with header-like text inside a string,
    one with extra headers, one LF-only) split at every byte boundary are each handed over exactly once."""
    from kimi_lsp.lsp.stdio import FrameReader

    class Protocol:
        initialize_seen = True
        writer = None

        def __init__(self) -> None:
            self.got: list[Any] = []

        def structure_message(self, data: dict) -> dict:
            return data

        def handle_message(self, message: Any) -> None:
            self.got.append(message)

    messages = [
        status(1),
        {"jsonrpc": "2.0", "method": "x", "params": {"text": "Content-Length: 5\r\n\r\n{}é"}},
        status(3),
    ]
    bodies = [json.dumps(m, ensure_ascii=False).encode() for m in messages]
    stream = (
        frame(bodies[0])
        + b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n" % len(bodies[1])
        + bodies[1]
        + b"Content-Length: %d\n\n" % len(bodies[2])
        + bodies[2]
    )
    for cut in range(1, len(stream)):
        for parts in ([stream[:cut], stream[cut:]], [stream[i : i + cut] for i in range(0, len(stream), cut)]):
            protocol = Protocol()
            reader = FrameReader(protocol)
            for part in parts:
                reader.data_received(part)
            assert protocol.got == messages, (cut, protocol.got)
