"""kimi-lsp with the server changes proposed in docs/benchmarks.md applied by patching at start-up, so their
effect can be measured before anyone edits the server (`bench/run.py --variant tuned`).

BENCH_TUNE (comma-separated, default all) picks the changes:
- `docs`: `kimi_lsp.documents.FastWorkspace` (line list, cached lines/offsets) instead of pygls' Workspace.
- `writer`: one stdout write+flush per event-loop turn instead of one per message (pygls' StdoutWriter
  flushes every message: a syscall per `kimi/stream` delta).
- `reader`: read stdin with asyncio (connect_read_pipe) instead of pygls' thread-pool `readline`/`read`
  (three or four thread hand-offs per incoming message).
- `sniffio`: make `sniffio` importable (from .tools/sniffio, `pip download --no-deps sniffio` and unzip the wheel there):
  without it httpcore's `current_async_library()` retries `import sniffio` — a failing import that scans
  sys.path — about 7 times per request.
- `progress`: send the chat request without waiting for the client's answer to `window/workDoneProgress/create`
  (the progress begins when the answer comes; cancel from the progress UI is linked then).
- `settings`: a command reuses the settings last pulled for its document and refreshes them in the background
  (stale-while-revalidate; `didChangeConfiguration` still clears them, so the next command waits for a pull).
- `coalesce`: `kimi/stream` deltas of one request that arrive in the same event-loop turn go out as one
  notification (the first delta of a turn is never delayed).
"""

from __future__ import annotations

import asyncio
import os
import sys

TUNE = {t.strip() for t in os.environ.get("BENCH_TUNE", "docs,writer,reader,coalesce,sniffio").split(",")
        if t.strip()}
SNIFFIO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".tools", "sniffio")


from kimi_lsp.stdio import CoalescingWriter  # noqa: E402  (shipped now; patched in for the old server)


def _patch_io() -> None:
    from pygls import server as pygls_server
    from pygls.io_ import run_async

    def _start_io_async(self, stdin=None, stdout=None):
        from threading import Event

        self._stop_event = Event()
        out = stdout or sys.stdout.buffer
        writer = None
        if "writer" in TUNE:
            writer = CoalescingWriter(out)
            self.protocol.set_writer(writer)
        else:
            from pygls.io_ import StdoutWriter

            self.protocol.set_writer(StdoutWriter(out))

        async def main() -> None:
            if writer is not None:
                await writer.attach()
            if "reader" in TUNE:
                loop = asyncio.get_running_loop()
                reader = asyncio.StreamReader(limit=2 ** 27)
                await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin or sys.stdin.buffer)
            else:
                from pygls.io_ import StdinAsyncReader

                reader = StdinAsyncReader(stdin or sys.stdin.buffer, self.thread_pool)
            await run_async(stop_event=self._stop_event, reader=reader, protocol=self.protocol,
                            error_handler=self.report_server_error)

        try:
            asyncio.run(main())
        except BrokenPipeError:
            pass
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    pygls_server.JsonRPCServer._start_io_async = _start_io_async


def _patch_progress() -> None:
    from lsprotocol import types as lsp

    from kimi_lsp import reporting

    async def begin(self, start: dict) -> None:
        if self.ls.stream_ui:
            self.notify({"kind": "start", **start})
        self.started = True
        if not self.ls.capability("window.work_done_progress"):
            return
        me = asyncio.current_task()
        token = f"kimi-{self.request_id}"

        async def create() -> None:
            try:
                await asyncio.wait_for(self.ls.work_done_progress.create_async(token), timeout=5)
            except Exception:
                return
            self.token = token
            self.cancel_future = self.ls.work_done_progress.tokens.get(token)
            if self.cancel_future is not None and me is not None:
                self.cancel_future.add_done_callback(lambda f: f.cancelled() and me.cancel())
            self.ls.work_done_progress.begin(token, lsp.WorkDoneProgressBegin(
                title=self.title, message=f"{self.model}: {self.state}", cancellable=True))

        self._progress_task = asyncio.ensure_future(create())

    reporting.LspSink.begin = begin


def _patch_settings() -> None:
    from kimi_lsp import server

    original_pull = server.SettingsStore.pull

    async def pull(self, uri=None):
        if self.can_pull and (uri or "") in self._by_uri:
            self.prefetch(uri)  # refresh for the next request
            return self.current(uri)
        return await original_pull(self, uri)

    server.SettingsStore.pull = pull


def _patch_stream() -> None:
    from kimi_lsp import reporting

    original_delta = reporting.LspSink.delta

    def delta(self, kind: str, text: str) -> None:
        if not self.ls.stream_ui:
            return original_delta(self, kind, text)
        pending = self.__dict__.setdefault("_pending", [])
        if pending and pending[-1][0] == kind:
            pending[-1][1].append(text)
        else:
            pending.append((kind, [text]))
        if not self.__dict__.get("_flush_scheduled"):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(_flush, self)
        # progress and state bookkeeping as before, without the per-delta notification
        stream_ui, self.ls.stream_ui = self.ls.stream_ui, False
        try:
            original_delta(self, kind, text)
        finally:
            self.ls.stream_ui = stream_ui

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self.__dict__.get("_pending", []), []
        for kind, parts in pending:
            self.notify({"kind": kind, "text": "".join(parts)})

    original_end = reporting.LspSink.end

    def end(self, *args, **kwargs):
        _flush(self)  # nothing may follow `done`
        return original_end(self, *args, **kwargs)

    reporting.LspSink.delta = delta
    reporting.LspSink.end = end


if __name__ == "__main__":
    if "sniffio" in TUNE:
        try:
            import sniffio  # noqa: F401
        except ImportError:
            if not os.path.isdir(SNIFFIO):
                sys.exit(f"BENCH_TUNE=sniffio: unzip the sniffio wheel into {SNIFFIO} first (`pip download --no-deps sniffio`)")
            sys.path.append(SNIFFIO)
    if "docs" in TUNE:
        import pygls.protocol.language_server as _language_server

        from kimi_lsp.documents import FastWorkspace

        _language_server.Workspace = FastWorkspace
    if TUNE & {"writer", "reader"}:
        _patch_io()
    if "coalesce" in TUNE:
        _patch_stream()
    if "progress" in TUNE:
        _patch_progress()
    if "settings" in TUNE:
        _patch_settings()
    from kimi_lsp.cli import main

    sys.exit(main())
