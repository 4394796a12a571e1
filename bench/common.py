"""Shared pieces of the benchmarks: the scripted editor, the fake API, process memory and CPU, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from lsprotocol import types as lsp
from pytest_lsp import client_capabilities, make_test_lsp_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import _plain, rng  # noqa: F401  (shared with the tests' scripted editor; rng is re-exported)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
FAKE_KEY = "sk-fake-valid-key"
PROFILE = "visual-studio-code"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -------------------------------------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): p99 of 1,000 samples is the 990th smallest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000.0


# -------------------------------------------------------------------------------------- processes


def rss_kb(pid: int) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(c) for c in text)
    except OSError:
        pass
    return out


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (a server may start helper processes)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += rss_kb(p) or 0
        todo.extend(children(p))
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    node = (
        subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        if _which("node")
        else "not installed"
    )
    return {
        "nproc": nproc,
        "cpu": cpu,
        "free": free,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "node": node,
    }


def _which(name: str) -> Optional[str]:
    import shutil

    return shutil.which(name)


# -------------------------------------------------------------------------------------------- the fake


class Fake:
    """The project's fake Moonshot API. `process` (default): `python -m kimi_lsp.fake` in its own process,
    driven through its control API, so its streaming work does not share a GIL with the benchmark client.
    `thread`: `FakeMoonshot(...).start_in_thread()` inside this process."""

    def __init__(self, mode: str = "process") -> None:
        self.mode = mode
        self._proc: Optional[subprocess.Popen] = None
        self._fake: Any = None
        self.base_url = ""

    def start(self) -> Fake:
        if self.mode == "thread":
            from kimi_lsp.fake import FakeMoonshot

            self._fake = FakeMoonshot().start_in_thread()
            self.base_url = self._fake.base_url
            return self
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "kimi_lsp.fake", "--port", "0"], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if "listening on" not in line:
            raise RuntimeError(f"the fake did not start: {line!r}")
        self.base_url = line.rsplit(" ", 1)[1]
        return self

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def _post(self, path: str, body: dict) -> Any:
        root = self.base_url.rsplit("/v1", 1)[0]
        req = urllib.request.Request(
            root + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def configure(self, first_token_delay: float = 0.0, token_delay: float = 0.0, chunk_chars: int = 6) -> None:
        if self._fake is not None:
            self._fake.configure(first_token_delay=first_token_delay, token_delay=token_delay, chunk_chars=chunk_chars)
        else:
            self._post(
                "/_fake/config",
                {"firstTokenDelay": first_token_delay, "tokenDelay": token_delay, "chunkChars": chunk_chars},
            )

    def script(self, faults: list[dict]) -> None:
        if self._fake is not None:
            from kimi_lsp.fake import Fault

            self._fake.script(*[Fault(**f) for f in faults])
        else:
            self._post("/_fake/script", {"faults": faults})

    def requests(self) -> list[dict]:
        """What the fake recorded: method, path, body, time (time.monotonic(), the clock perf_counter uses)."""
        if self._fake is not None:
            return [r.to_json() for r in self._fake.requests]
        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(root + "/_fake/requests", timeout=10) as resp:
            return json.loads(resp.read())["requests"]

    def reset(self) -> None:
        if self._fake is not None:
            self._fake.reset()
        else:
            self._post("/_fake/reset", {})

    def stop(self) -> None:
        if self._fake is not None:
            self._fake.stop_thread()
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class Profiler:
    """py-spy attached to a server process while a benchmark runs (`bench/run.py --profile DIR`)."""

    directory: Optional[Path] = None
    count = 0

    def __init__(self, pid: int, label: str) -> None:
        self.proc: Optional[subprocess.Popen] = None
        if Profiler.directory is None:
            return
        Profiler.count += 1
        Profiler.directory.mkdir(parents=True, exist_ok=True)
        out = Profiler.directory / f"{Profiler.count:02d}-{label}.txt"
        spy = VENV_BIN / "py-spy"
        self.proc = subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "500",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attach before the work starts

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ----------------------------------------------------------------------------------------- the editor


def server_env(extra_path: Optional[str] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOONSHOT_", "KIMI_"))}
    env.update({"MOONSHOT_API_KEY": FAKE_KEY, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    # Conversations the benchmarks start are saved apart from the user's own (and thrown away with the temp folder).
    env["KIMI_LSP_STATE_DIR"] = str(Path(tempfile.gettempdir()) / "kimi-lsp-bench-state")
    if extra_path:
        env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
    return env


def kimi_cmd() -> list[str]:
    return [str(VENV_BIN / "kimi-lsp")]


def bare_cmd() -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "bare_server.py")]


class Session:
    """One language server process driven over stdio by pytest-lsp's client with VS Code's capabilities.
    Answers workspace/configuration (section `kimi`), workspace/applyEdit (accepts) and progress like the
    editor; timestamps every `kimi/stream` notification on arrival."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: Optional[dict] = None,
        settings: Optional[dict] = None,
        init_options: Any = None,
        root: Optional[Path] = None,
        profile: Optional[str] = None,
    ) -> None:
        self.cmd, self.env = cmd, env or server_env()
        self.init_options = init_options
        self.profile_label = profile
        self._profiler: Optional[Profiler] = None
        self.root = root or Path("/tmp/kimi-bench-ws")
        self.root.mkdir(parents=True, exist_ok=True)
        self.client = make_test_lsp_client()
        self.client.capabilities = client_capabilities(PROFILE)
        if settings is not None:
            self.client.set_configuration(settings, section="kimi")
        self.stream: list[tuple[float, dict]] = []
        self.on_stream: Optional[Callable[[float, dict], None]] = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.pid = 0
        self.version: dict[str, int] = {}
        self._stderr_task: Optional[asyncio.Task] = None
        self._fix_code_action_decoding()
        self._register()

    def _register(self) -> None:
        @self.client.feature("kimi/stream")
        def on_stream(params: Any) -> None:
            now = time.perf_counter()
            item = _plain(params)
            self.stream.append((now, item))
            if self.on_stream is not None:
                self.on_stream(now, item)

        @self.client.feature(lsp.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            return lsp.ApplyWorkspaceEditResult(applied=True)

    def _fix_code_action_decoding(self) -> None:
        # lsprotocol 2025.0.0 decodes a CodeAction with a nested Command as a Command (as tests/harness.py).
        conv = self.client.protocol._converter
        union = typing.Union[lsp.Command, lsp.CodeAction]

        def hook(obj: Any, _t: Any) -> Any:
            return conv.structure(obj, lsp.Command if isinstance(obj.get("command"), str) else lsp.CodeAction)

        conv.register_structure_hook(union, hook)

    async def start(self, timeout: float = 60) -> float:
        """Spawns the server and sends `initialize`; returns seconds from spawn to the result."""
        t0 = time.perf_counter()
        await self.client.start_io(*self.cmd, env=self.env)
        proc = self.client._server
        self.pid = proc.pid
        # pytest-lsp forwards the server's stderr to ours; keep only a tail (shown if something fails).
        if getattr(self.client, "_stderr_forwarder", None):
            self.client._stderr_forwarder.cancel()
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
        try:
            await asyncio.wait_for(
                self.client.initialize_async(
                    lsp.InitializeParams(
                        capabilities=self.client.capabilities,
                        process_id=os.getpid(),
                        root_uri=self.root.as_uri(),
                        workspace_folders=[lsp.WorkspaceFolder(uri=self.root.as_uri(), name="bench")],
                        client_info=lsp.ClientInfo(name="Visual Studio Code", version="1.100.0"),
                        initialization_options=self.init_options,
                    )
                ),
                timeout,
            )
        except Exception as exc:
            await asyncio.sleep(0.3)  # collect what the server said on its way out
            tail = "\n".join(list(self.stderr_tail)[-15:])
            raise RuntimeError(f"{' '.join(self.cmd)} did not initialize: {exc}\n{tail}") from None
        elapsed = time.perf_counter() - t0
        self.client.initialized(lsp.InitializedParams())
        if self.profile_label:
            self._profiler = Profiler(self.pid, self.profile_label)
        return elapsed

    async def _drain_stderr(self, proc: Any) -> None:
        with contextlib.suppress(Exception):
            while line := await proc.stderr.readline():
                self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def stop(self) -> None:
        if self._profiler:
            self._profiler.stop()
        proc = self.client._server
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_async(None), 5)
            self.client.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        # Helper processes a server left behind (copilot starts some): end them by their own ids.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 5)
        if self._stderr_task:
            self._stderr_task.cancel()

    # -- documents and requests ----------------------------------------------------------------------

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str, language: str = "python") -> str:
        uri = self.uri(name)
        self.version[uri] = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
            )
        )
        return uri

    def edit(self, uri: str, line: int, character: int, end_line: int, end_character: int, text: str) -> None:
        self.version[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.version[uri]),
                content_changes=[
                    lsp.TextDocumentContentChangePartial(
                        range=lsp.Range(
                            start=lsp.Position(line=line, character=character),
                            end=lsp.Position(line=end_line, character=end_character),
                        ),
                        text=text,
                    )
                ],
            )
        )

    async def code_action(self, uri: str, l1: int, c1: int, l2: int, c2: int, timeout: float = 10) -> list:
        params = lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            range=lsp.Range(start=lsp.Position(line=l1, character=c1), end=lsp.Position(line=l2, character=c2)),
            context=lsp.CodeActionContext(diagnostics=[]),
        )
        return await asyncio.wait_for(self.client.text_document_code_action_async(params), timeout) or []

    async def command(self, name: str, args: dict, timeout: float = 60) -> Any:
        result = await asyncio.wait_for(
            self.client.workspace_execute_command_async(lsp.ExecuteCommandParams(command=name, arguments=[args])),
            timeout,
        )
        return _plain(result)


class LeanSession:
    """The same editor as `Session` over a minimal JSON-RPC client (json.loads and a dict per message, no
    cattrs, no capability checks). Used where pytest-lsp's client is itself the bottleneck: B4's 50 streams
    send it ~10,000 notifications a second. Same capabilities (VS Code's), same answers to the server."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: Optional[dict] = None,
        settings: Optional[dict] = None,
        init_options: Any = None,
        root: Optional[Path] = None,
        profile: Optional[str] = None,
    ) -> None:
        from lsprotocol.converters import get_converter

        self.profile_label = profile
        self._profiler: Optional[Profiler] = None
        self.cmd, self.env = cmd, env or server_env()
        self.settings = settings or {}
        self.init_options = init_options
        self.root = root or Path("/tmp/kimi-bench-ws")
        self.root.mkdir(parents=True, exist_ok=True)
        self.capabilities = get_converter().unstructure(client_capabilities(PROFILE))
        self.stream: list[tuple[float, dict]] = []
        self.on_stream: Optional[Callable[[float, dict], None]] = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.version: dict[str, int] = {}
        self.pid = 0
        self._proc: Any = None
        self._next = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []

    def _send(self, msg: dict) -> None:
        body = json.dumps(msg, separators=(",", ":")).encode()
        self._proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def request(self, method: str, params: Any, timeout: float = 60) -> Any:
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self._send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        msg = await asyncio.wait_for(fut, timeout)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _answer(self, method: str, params: Any) -> Any:
        if method == "workspace/configuration":
            return [self.settings if item.get("section") == "kimi" else None for item in params.get("items", [])]
        if method == "workspace/applyEdit":
            return {"applied": True}
        if method == "window/showDocument":
            return {"success": True}
        return None  # workDoneProgress/create, registerCapability, codeLens/refresh, showMessageRequest

    async def _read(self) -> None:
        out = self._proc.stdout
        while True:
            length = 0
            while True:
                line = await out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            msg = json.loads(await out.readexactly(length))
            now = time.perf_counter()
            method = msg.get("method")
            if method is None:
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif "id" in msg:
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": self._answer(method, msg.get("params"))})
            elif method == "kimi/stream":
                self.stream.append((now, msg["params"]))
                if self.on_stream is not None:
                    self.on_stream(now, msg["params"])

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while line := await self._proc.stderr.readline():
                self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def start(self, timeout: float = 60) -> float:
        t0 = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            limit=2**24,
        )
        self.pid = self._proc.pid
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._drain_stderr())]
        try:
            await self.request(
                "initialize",
                {
                    "processId": os.getpid(),
                    "rootUri": self.root.as_uri(),
                    "capabilities": self.capabilities,
                    "workspaceFolders": [{"uri": self.root.as_uri(), "name": "bench"}],
                    "clientInfo": {"name": "Visual Studio Code", "version": "1.100.0"},
                    "initializationOptions": self.init_options,
                },
                timeout,
            )
        except Exception as exc:
            await asyncio.sleep(0.3)
            tail = "\n".join(list(self.stderr_tail)[-15:])
            raise RuntimeError(f"{' '.join(self.cmd)} did not initialize: {exc}\n{tail}") from None
        elapsed = time.perf_counter() - t0
        self.notify("initialized", {})
        if self.profile_label:
            self._profiler = Profiler(self.pid, self.profile_label)
        return elapsed

    async def stop(self) -> None:
        if self._profiler:
            self._profiler.stop()
        with contextlib.suppress(Exception):
            await self.request("shutdown", None, timeout=5)
            self.notify("exit", None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._proc.wait(), 5)
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        for task in self._tasks:
            task.cancel()

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str, language: str = "python") -> str:
        uri = self.uri(name)
        self.version[uri] = 1
        self.notify(
            "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}
        )
        return uri

    def edit(self, uri: str, line: int, character: int, end_line: int, end_character: int, text: str) -> None:
        self.version[uri] += 1
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": self.version[uri]},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": line, "character": character},
                            "end": {"line": end_line, "character": end_character},
                        },
                        "text": text,
                    }
                ],
            },
        )

    async def code_action(self, uri: str, l1: int, c1: int, l2: int, c2: int, timeout: float = 10) -> list:
        return (
            await self.request(
                "textDocument/codeAction",
                {
                    "textDocument": {"uri": uri},
                    "range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}},
                    "context": {"diagnostics": []},
                },
                timeout,
            )
            or []
        )

    async def command(self, name: str, args: dict, timeout: float = 60) -> Any:
        return await self.request("workspace/executeCommand", {"command": name, "arguments": [args]}, timeout)


def session(kind: str, cmd: list[str], **kwargs: Any) -> Session | LeanSession:
    return LeanSession(cmd, **kwargs) if kind == "lean" else Session(cmd, **kwargs)
