"""kimi-lsp with timestamps on its inline-completion path, for attributing B8's overhead (nothing in server/ changes).

    B8_TRACE=/tmp/trace.json .venv/bin/python bench/b8_trace_server.py   # instead of `kimi-lsp`
    B8_NO_STREAM=1 ...   # the experiment: completions asked for with `stream: false` (one JSON reply)

Wraps, at run time, the steps between an inlineCompletion request's bytes arriving and its answer leaving, and
writes (label, time.perf_counter()) pairs (CLOCK_MONOTONIC, the client's and the fake's clock) to $B8_TRACE at exit.
`bench/b8_completion.py --trace` runs B8's overhead part against it and prints the median of each step.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import time
from typing import Any

EVENTS: list[tuple[str, float]] = []
READY: list[list[str]] = []
now = time.perf_counter


def mark(label: str) -> None:
    EVENTS.append((label, now()))


def _dump() -> None:
    path = os.environ.get("B8_TRACE")
    if path:
        with open(path, "w") as f:
            json.dump(EVENTS, f)
        if READY:
            with open(path + ".ready", "w") as f:
                json.dump(READY, f, indent=1)


def around(owner: Any, name: str, label: str, *, is_async: bool = False, after: bool = True) -> None:
    """Marks `label:in` before and `label:out` after owner.name (a function or method)."""
    fn = getattr(owner, name)
    if is_async:

        @functools.wraps(fn)
        async def wrapped_async(*a: Any, **k: Any) -> Any:
            mark(label + ":in")
            try:
                return await fn(*a, **k)
            finally:
                if after:
                    mark(label + ":out")

        setattr(owner, name, wrapped_async)
    else:

        @functools.wraps(fn)
        def wrapped(*a: Any, **k: Any) -> Any:
            mark(label + ":in")
            try:
                return fn(*a, **k)
            finally:
                if after:
                    mark(label + ":out")

        setattr(owner, name, wrapped)


def install() -> None:
    import httpcore._async.http11 as h11c
    import httpx

    import kimi_lsp.core.completion as cc
    import kimi_lsp.core.prompts as prompts
    import kimi_lsp.kimi.http as kh
    import kimi_lsp.kimi.pricing as pricing
    import kimi_lsp.kimi.rules as rules
    import kimi_lsp.lsp.config as config
    import kimi_lsp.lsp.features.completion as fc
    import kimi_lsp.lsp.server as server
    import kimi_lsp.lsp.stdio as stdio
    import kimi_lsp.redact as redact

    dispatch = stdio.FrameReader._dispatch

    def traced_dispatch(self: Any, body: bytes) -> bool:
        inline = b"textDocument/inlineCompletion" in body
        if inline:
            mark("frame:read")
        try:
            return dispatch(self, body)
        finally:
            if inline:
                mark("frame:dispatched")

    stdio.FrameReader._dispatch = traced_dispatch

    write = stdio.CoalescingWriter.write

    def traced_write(self: Any, data: bytes) -> None:
        if b'"items"' in data[:400] or b"insertText" in data[:2000]:
            mark("answer:buffered")
            self._b8_answer = True
            if os.environ.get("B8_READY"):  # what else runs in the loop turn before the write
                import asyncio

                ready = getattr(asyncio.get_running_loop(), "_ready", ())
                READY.append([repr(h)[:300] for h in ready])
        return write(self, data)

    stdio.CoalescingWriter.write = traced_write
    flush = stdio.CoalescingWriter.flush

    def traced_flush(self: Any) -> None:
        answer = getattr(self, "_b8_answer", False)
        self._b8_answer = False
        if answer:
            mark("answer:flush")
        flush(self)
        if answer:
            mark("answer:written")

    stdio.CoalescingWriter.flush = traced_flush

    around(fc.CompletionFeature, "complete", "complete", is_async=True)
    around(config.SettingsStore, "settled", "settled", is_async=True)
    around(fc, "cursor_at", "cursor_at")
    around(fc, "offset_at", "offset_at")
    around(fc.CompletionFeature, "_others", "others")
    around(cc.CompletionCache, "get", "cache_get")
    around(cc.CompletionCache, "put", "cache_put")
    around(fc.CompletionFeature, "_fetch", "fetch", is_async=True)
    around(fc.CompletionFeature, "model", "model")
    around(fc.CompletionFeature, "_item", "item")
    around(cc, "messages", "messages")
    around(cc, "clean", "clean")
    around(prompts, "estimate_tokens", "estimate_tokens")
    if os.environ.get("B8_NO_STREAM"):  # experiment: completions sent with stream false (one JSON reply)
        body_of = rules.chat_body

        def unstreamed(*a: Any, **k: Any) -> dict:
            return {**body_of(*a, **{**k, "stream": False}), "stream": False}  # _stream_once wants it said

        rules.chat_body = unstreamed
    around(rules, "chat_body", "chat_body")
    around(pricing, "normalise_usage", "usage")
    around(pricing, "cost", "cost")
    around(server.KimiLanguageServer, "kimi", "ls_kimi", is_async=True)
    around(kh.KimiClient, "stream_chat", "stream_chat", is_async=True)
    around(kh.KimiClient, "_stream_once", "stream_once", is_async=True)
    around(redact, "redact_obj", "redact")
    around(httpx.AsyncClient, "build_request", "httpx_build")
    around(h11c.AsyncHTTP11Connection, "_send_request_headers", "send_headers", is_async=True)
    around(h11c.AsyncHTTP11Connection, "_send_request_body", "send_body", is_async=True)
    around(h11c.AsyncHTTP11Connection, "_receive_response_headers", "recv_headers", is_async=True)
    around(kh.ChunkReader, "feed", "chunk")
    around(kh.ChunkReader, "finish", "reader_finish")
    atexit.register(_dump)


if __name__ == "__main__":
    install()
    from kimi_lsp.cli import main

    try:
        code = main([])
    finally:
        _dump()
    raise SystemExit(code)
