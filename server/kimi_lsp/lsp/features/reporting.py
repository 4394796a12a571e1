"""The LSP result sink: work-done progress, the `kimi/stream` notification, and showing explanations."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from lsprotocol import types as lsp

from kimi_lsp.core.markdown import plain_text, safe_markdown
from kimi_lsp.lsp.protocol import ClientRequestError
from kimi_lsp.redact import StreamGuard

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

log = logging.getLogger(__name__)
STREAM = "kimi/stream"
TAIL = 60
REPORT_EVERY = 0.1  # seconds between progress reports: a fast stream must not flood the client
ANNOUNCE_AFTER = 0.02  # seconds: the request is announced by then even if it is still being sent


class LspSink:
    """Receives the pipeline's events for one request and tells the editor."""

    def __init__(self, ls: KimiLanguageServer, request_id: str, title: str, model: str) -> None:
        self.ls, self.request_id, self.title, self.model = ls, request_id, title, model
        self.token: Optional[str] = None
        self.ended = False
        self._creating: Optional[asyncio.Future] = None
        self.state = "starting"
        self.chars = 0
        self.tail = ""
        self._last = 0.0
        self.began = time.monotonic()
        self.on_content: Optional[Callable[[str], None]] = None
        self.on_start: Optional[Callable[[], None]] = None
        self.started = False
        self._start: Optional[dict] = None
        self._job: Optional[asyncio.Task] = None
        self._hold: Optional[asyncio.TimerHandle] = None
        self._pending: list[tuple[str, list[str]]] = []  # deltas of this loop turn, sent as one notification
        self._flush_scheduled = False
        self._first_sent = False
        self._guards: dict[str, StreamGuard] = {}

    async def begin(self, start: dict) -> None:
        """Registers the request. The editor hears of it (`start`, work-done progress, `on_start`) once the
        HTTP request is on the wire (`sent`), or after ANNOUNCE_AFTER if sending takes longer: the editor's
        replies (progress creation, code lens requests) would otherwise compete with sending it."""
        self._start = start
        self._job = asyncio.current_task()
        self._hold = asyncio.get_running_loop().call_later(ANNOUNCE_AFTER, self.announce)

    def sent(self) -> None:
        """The chat request has been written to the connection."""
        self.announce()

    def announce(self) -> None:
        if self.started or self._start is None:
            return
        self.started = True
        if self._hold is not None:
            self._hold.cancel()
        if self.ls.stream_ui:
            self.notify({"kind": "start", **self._start})
            if self.state != "starting":
                self.notify({"kind": "status", "text": self.state})
        if self.ls.capability("window.work_done_progress"):
            self._creating = self.ls.run_task(self._create_progress(self._job), f"progress for {self.request_id}")
        if self.on_start is not None:
            self.on_start()

    async def _create_progress(self, job: Optional[asyncio.Task]) -> None:
        token = f"kimi-{self.request_id}"
        try:
            await self.ls.ask_client(
                lsp.WINDOW_WORK_DONE_PROGRESS_CREATE, lsp.WorkDoneProgressCreateParams(token=token)
            )
        except ClientRequestError as exc:
            log.debug("progress not created: %s", exc)
            return
        if self.ended:  # the request finished first: nothing left to show
            return
        self.token = token
        self.ls.work_done_progress.begin(
            token, lsp.WorkDoneProgressBegin(title=self.title, message=f"{self.model}: {self.state}", cancellable=True)
        )
        cancel = self.ls.work_done_progress.tokens.get(token)  # registered by begin: the user's cancel resolves it
        if cancel is not None and job is not None:
            cancel.add_done_callback(lambda f: f.cancelled() and job.cancel())

    def notify(self, params: dict) -> None:
        self.ls.protocol.notify(STREAM, {"requestId": self.request_id, **params})

    def status(self, text: str) -> None:
        self.state = text
        if not self.started:  # announce() sends it with `start`
            return
        if self.ls.stream_ui:
            self._flush()
            self.notify({"kind": "status", "text": text})
        self._report(force=True)

    def delta(self, kind: str, text: str) -> None:
        self.announce()
        guard = self._guards.get(kind)
        if guard is None:
            guard = self._guards[kind] = StreamGuard()
        text = guard.feed(text)  # a key split across two deltas is held back until it can be redacted whole
        if text:
            self._emit(kind, text)

    def _emit(self, kind: str, text: str) -> None:
        if self.ls.stream_ui:
            self._queue(kind, text)
        if kind == "reasoning":
            self.state = "thinking"
        else:
            self.state = "writing"
            if self.on_content is not None:
                self.on_content(text)
            self.chars += len(text)
            self.tail = (self.tail + text)[-TAIL:]
        self._report()

    def _queue(self, kind: str, text: str) -> None:
        """Deltas that arrive in the same event-loop turn leave as one notification. The very first leaves at
        once: a reply that arrives in one read would otherwise wait until all of it has been parsed."""
        if not self._first_sent:
            self._first_sent = True
            self.notify({"kind": kind, "text": text})
            self.ls.flush_output()
            return
        if self._pending and self._pending[-1][0] == kind:
            self._pending[-1][1].append(text)
        else:
            self._pending.append((kind, [text]))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for kind, parts in pending:
            self.notify({"kind": kind, "text": "".join(parts)})

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.token is None or (not force and now - self._last < REPORT_EVERY):
            return
        self._last = now
        tokens = f" · ~{self.chars // 4} tokens" if self.chars else ""
        tail = " · …" + " ".join(self.tail.split())[-40:] if self.tail.strip() else ""
        self.ls.work_done_progress.report(
            self.token,
            lsp.WorkDoneProgressReport(message=f"{self.model}: {self.state}{tokens}{tail}", cancellable=True),
        )

    def end(self, done: dict, message: str) -> None:
        self.announce()
        for kind, guard in list(self._guards.items()):
            if rest := guard.flush():
                self._emit(kind, rest)
        self._guards.clear()
        self._flush()  # nothing may follow `done`
        self.ended = True
        if self.ls.stream_ui and self.started:
            self.notify({"kind": "done", "elapsedMs": int((time.monotonic() - self.began) * 1000), **done})
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
            self.ls.work_done_progress.tokens.pop(self.token, None)


def _private_dir(folder: Path, make_parents: bool = False) -> Path:
    """`folder`, created 0700 if missing, then checked without following links: a directory, owned by this user
    and closed to everyone else (in a shared /tmp another user may have planted it, or a link in its place)."""
    if make_parents:
        folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{folder} is not a directory (perhaps a link); answers are not written there")
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o077):
        raise OSError(f"{folder} is not private to this user; answers are not written there")
    return folder


def _answers_folder() -> Path:
    """The private folder for answers shown as documents: in the per-user runtime dir, else the user's cache
    dir, else a folder of ours in the temp dir. Raises OSError when none of them is safe to use."""
    import platformdirs

    uid = os.getuid() if hasattr(os, "getuid") else "user"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [(Path(runtime) / "kimi-lsp", False)] if runtime else []
    candidates += [
        (platformdirs.user_cache_path("kimi-lsp") / "answers", True),  # (folder, create its parents)
        (Path(tempfile.gettempdir()) / f"kimi-lsp-{uid}", False),
    ]
    problems = []
    for folder, make_parents in candidates:
        try:
            return _private_dir(folder, make_parents)
        except OSError as exc:
            problems.append(str(exc))
    raise OSError("no private folder for answers: " + "; ".join(problems))


def prune_answers(max_age: float = 86400.0) -> None:
    """Answers shown as documents are temporary: remove those older than a day (run in a worker thread). Only
    regular files of ours are removed; links are not followed."""
    cutoff = time.time() - max_age
    try:
        with os.scandir(_answers_folder()) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                ours = entry.name.startswith("kimi-") and entry.name.endswith(".md") and stat.S_ISREG(info.st_mode)
                if ours and info.st_mtime < cutoff:
                    os.unlink(entry.path)
    except OSError:
        pass


def _write_markdown(request_id: str, text: str) -> str:
    """A new file nobody can have prepared: a random name, created exclusively, no link followed, 0600."""
    label = re.sub(r"[^A-Za-z0-9_-]", "", request_id)[:32]
    path = _answers_folder() / f"kimi-{label + '-' if label else ''}{secrets.token_hex(16)}.md"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with open(os.open(path, flags, 0o600), "w", encoding="utf-8") as fh:
        fh.write(text)
    return path.as_uri()


async def show_answer(ls: KimiLanguageServer, request_id: str, title: str, markdown: str, force: bool = False) -> None:
    """Opens the answer where the client can show a document, else as a message. Clients that render
    `kimi/stream` themselves get nothing extra, unless `force`."""
    if ls.stream_ui and not force:
        return
    if ls.capability("window.show_document.support"):
        try:
            document = f"# {title}\n\n{markdown}\n"
            uri = await asyncio.to_thread(lambda: _write_markdown(request_id, safe_markdown(document)))
            shown = await ls.ask_client(
                lsp.WINDOW_SHOW_DOCUMENT,
                lsp.ShowDocumentParams(uri=uri, take_focus=False),
                expect=lsp.ShowDocumentResult,
            )
            if shown.success:
                return
            log.warning("the editor could not show the answer; falling back to a message")
        except Exception as exc:  # a disk error, or ClientRequestError
            log.warning("showDocument failed, falling back to a message: %s", exc)
    # showMessage is plain text: the model's Markdown made inert, then its markers dropped
    message = await asyncio.to_thread(lambda: plain_text(safe_markdown(f"{title}\n\n{markdown}")))
    ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Info, message=message))
