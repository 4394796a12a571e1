"""Live answers: streaming, progress, cancellation from every path, thinking, preview, minimal edits,
context limits, proxies and concurrency. The real server against the fake over loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types as lsp

from harness import base, editor, rng

CODE = "".join(f"x{i} = total + {i}\n" if i in (2, 7) else f"y{i} = {i}\n" for i in range(10))
SEL = rng(0, 0, 10, 0)


async def test_progress_and_stream_arrive_before_the_end(profile, fake, tmp_path):
    fake.configure(token_delay=0.03, chunk_chars=4)
    async with editor(profile, tmp_path, base(fake), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(ed.command("kimi.explain", {"uri": uri, "range": SEL}))
        await ed.wait_for(lambda: any(s["kind"] == "content" for s in ed.stream), what="first content delta")
        assert not task.done()  # the answer is still arriving
        if ed.capabilities.window and ed.capabilities.window.work_done_progress:
            await ed.wait_for(lambda: any("writing" in m for m in ed.progress_messages()), what="progress report")
            assert not task.done()
        result = await task
        kinds = [s["kind"] for s in ed.stream]
        assert kinds[0] == "start" and kinds[-1] == "done"
        last_reasoning = max(i for i, k in enumerate(kinds) if k == "reasoning")
        assert last_reasoning < kinds.index("content")
        text = "".join(s["text"] for s in ed.stream if s["kind"] == "content")
        assert text.strip() == result["text"]
        done = ed.stream[-1]
        assert done["finishReason"] == "stop" and done["usage"]["total_tokens"] > 0 and done["elapsedMs"] > 0
        assert {s["requestId"] for s in ed.stream} == {result["requestId"]}
        assert ed.client.shown_documents == []  # a streaming client renders the answer itself


async def test_progress_reports_state_and_tail(fake, tmp_path):
    fake.configure(token_delay=0.02, chunk_chars=3)
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        [reports] = ed.client.progress_reports.values()
        assert isinstance(reports[0], lsp.WorkDoneProgressBegin) and reports[0].title == "Kimi: Explain"
        assert reports[0].cancellable is True
        msgs = [r.message for r in reports[1:-1]]
        assert any("thinking" in m for m in msgs) and any("writing" in m and "tokens" in m for m in msgs)
        assert any("…" in m for m in msgs)  # a rolling tail of the text
        assert isinstance(reports[-1], lsp.WorkDoneProgressEnd)


async def _assert_cancelled_cleanly(ed, fake, uri):
    await ed.wait_for(
        lambda: fake.chat_requests() and fake.chat_requests()[0].disconnected_early,
        5,
        what="the fake to see the connection close",
    )
    await asyncio.sleep(0.2)
    assert ed.applied == [] and ed.texts[uri] == CODE
    assert not ed.client.diagnostics.get(uri)
    assert not [m for m in ed.client.messages if m.type == lsp.MessageType.Error]
    r = await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
    assert r["applied"] is True


async def test_cancel_by_progress_token(fake, tmp_path):
    fake.configure(token_delay=0.05)
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(ed.command("kimi.refactor", {"uri": uri, "range": SEL}))
        await ed.wait_for(
            lambda: fake.chat_requests() and any("writing" in m for m in ed.progress_messages()), what="mid-stream"
        )
        [token] = ed.client.progress_reports
        ed.client.window_work_done_progress_cancel(lsp.WorkDoneProgressCancelParams(token=token))
        r = await asyncio.wait_for(task, 5)
        assert r["cancelled"] is True and r["applied"] is False
        fake.configure(token_delay=0)
        await _assert_cancelled_cleanly(ed, fake, uri)


async def test_cancel_by_cancel_request(profile, fake, tmp_path):
    fake.configure(token_delay=0.05)
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        fut = ed.command_with_id("kimi.refactor", {"uri": uri, "range": SEL}, "req-1")
        await ed.wait_for(lambda: fake.chat_requests(), what="the stream to start")
        await asyncio.sleep(0.2)
        ed.cancel_request("req-1")
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(fut, 5)
        fake.configure(token_delay=0)
        await _assert_cancelled_cleanly(ed, fake, uri)


async def test_cancel_by_command_and_by_newer_request(profile, fake, tmp_path):
    fake.configure(token_delay=0.05)
    async with editor(profile, tmp_path, base(fake), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(ed.command("kimi.refactor", {"uri": uri, "range": SEL}))
        await ed.wait_for(lambda: ed.stream and fake.chat_requests(), what="the stream to start")
        rid = ed.stream[0]["requestId"]
        assert (await ed.command("kimi.cancel", {"requestId": rid}))["cancelled"] == 1
        r = await asyncio.wait_for(task, 5)
        assert r["cancelled"] is True
        assert any(s["kind"] == "done" and s.get("cancelled") for s in ed.stream)
        fake.configure(token_delay=0)
        await _assert_cancelled_cleanly(ed, fake, uri)
        # the same range and action again while one runs: the old one is cancelled, the new one applies
        fake.reset()
        fake.configure(token_delay=0.05)
        ed.change(uri, CODE)
        first = asyncio.ensure_future(ed.command("kimi.refactor", {"uri": uri, "range": SEL}))
        await ed.wait_for(lambda: fake.chat_requests(), what="first stream")
        second = asyncio.ensure_future(
            ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        )
        assert (await asyncio.wait_for(first, 5))["cancelled"] is True
        assert (await asyncio.wait_for(second, 20))["applied"] is True
        assert fake.chat_requests()[0].disconnected_early
        assert ed.texts[uri] == CODE.replace("total", "acc")


async def test_a_request_stuck_connecting_is_announced_and_cancellable(fake, tmp_path):
    """The editor hears of a request once it is on the wire, or shortly after if it cannot be sent: here
    the connection never completes (a listening socket whose queue is full)."""
    import socket

    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(0)
    filler = socket.create_connection(stalled.getsockname())  # takes the only place in the queue
    try:
        settings = base(fake, baseUrl=f"http://127.0.0.1:{stalled.getsockname()[1]}/v1")
        async with editor("visual-studio-code", tmp_path, settings, init_options={"stream": True}) as ed:
            uri = ed.open("a.py", CODE)
            task = asyncio.ensure_future(ed.command("kimi.refactor", {"uri": uri, "range": SEL}))
            # the token appears when progress is created, its first report a moment later: wait for the report
            await ed.wait_for(
                lambda: ed.stream and any(ed.client.progress_reports.values()), 5, what="start and progress"
            )
            assert [s["kind"] for s in ed.stream] == ["start", "status"]
            assert ed.stream[1]["text"] == "thinking"  # kimi-k2.5 thinks by default
            [reports] = ed.client.progress_reports.values()
            assert reports[0].title == "Kimi: Refactor" and not task.done()
            assert (await ed.command("kimi.cancel"))["cancelled"] == 1
            r = await asyncio.wait_for(task, 5)
            assert r["cancelled"] is True and r["applied"] is False and ed.texts[uri] == CODE
            assert ed.stream[-1]["kind"] == "done" and ed.stream[-1].get("cancelled")
    finally:
        filler.close()
        stalled.close()


async def test_cancel_all(fake, tmp_path):
    fake.configure(token_delay=0.05)
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        tasks = [
            asyncio.ensure_future(ed.command("kimi.explain", {"uri": uri, "range": rng(i, 0, i + 1, 0)}))
            for i in range(3)
        ]
        await ed.wait_for(lambda: len(fake.chat_requests()) == 3, what="three streams")
        assert (await ed.command("kimi.cancel"))["cancelled"] == 3
        assert all(r["cancelled"] for r in await asyncio.gather(*tasks))
        await ed.wait_for(lambda: all(r.disconnected_early for r in fake.chat_requests()), what="all closed")


@pytest.mark.parametrize(
    "model,fault", [("kimi-k2.7-code", None), ("kimi-k2.5", "think_tags"), ("moonshot-v1-8k", "think_tags")]
)
async def test_thinking_never_reaches_the_document(model, fault, fake, tmp_path):
    if fault:
        fake.script(fault)
    async with editor("visual-studio-code", tmp_path, base(fake, model=model), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        assert r["applied"] is True and ed.texts[uri] == CODE.replace("total", "acc")
        assert any(s["kind"] == "reasoning" for s in ed.stream)
        if fault:
            fake.script(fault)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert "<think>" not in r["text"] and "hidden reasoning" not in r["text"] and "Thinking about" not in r["text"]
        assert r["reasoning"]


async def test_thinking_that_uses_the_whole_budget(fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake, model="kimi-k2.7-code", maxTokens=8)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": SEL})
        assert r["applied"] is False and "maxTokens" in r["error"]["message"] and "thinking" in r["error"]["message"]
        assert ed.texts[uri] == CODE


async def test_reply_cut_by_length_is_not_applied(fake, tmp_path):
    fake.script("length")
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": SEL})
        assert r["applied"] is False and "cut off" in r["error"]["message"] and ed.texts[uri] == CODE


async def test_preview_annotations(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake, previewEdits="auto")) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        [params] = ed.applied
        ws = ed.capabilities.workspace
        supported = bool(ws and ws.workspace_edit and ws.workspace_edit.change_annotation_support)
        assert supported == (profile == "visual-studio-code")
        if supported:
            ann = params.edit.change_annotations["kimi"]
            assert ann.needs_confirmation is True and ann.label == "Kimi: Refactor"
            assert all(e.annotation_id == "kimi" for e in params.edit.document_changes[0].edits)
        else:
            assert not params.edit.change_annotations
        assert params.label == "Kimi: Refactor"
        ed.change(uri, CODE)
        ed.configure(base(fake, previewEdits="never"))
        await asyncio.sleep(0.2)
        await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        assert not ed.applied[-1].edit.change_annotations


async def test_minimal_edits_leave_other_lines_alone(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        [params] = ed.applied
        change = params.edit.document_changes[0] if params.edit.document_changes else None
        edits = change.edits if change else params.edit.changes[uri]
        assert [(e.range.start.line, e.range.end.line) for e in edits] == [(2, 3), (7, 8)]
        if change:
            assert change.text_document.version == 1
        assert ed.texts[uri] == CODE.replace("total", "acc")


async def test_oversize_refused_before_any_request(fake, tmp_path):
    big = "".join(f"value_{i} = compute({i}) + other({i})\n" for i in range(1500))
    async with editor("neovim", tmp_path, base(fake, model="moonshot-v1-8k")) as ed:
        uri = ed.open("big.py", big)
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1500, 0)})
        msg = r["error"]["message"]
        assert r["error"]["code"] == "refused" and "moonshot-v1-8k" in msg and "8,192" in msg
        assert msg.index("moonshot-v1-32k") < msg.index("moonshot-v1-128k")
        assert fake.requests == []
        # context beyond the selection is trimmed first: a small selection in the big file still goes
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(750, 0, 751, 0)})
        assert "text" in r
        ed.configure(base(fake, model="moonshot-v1-8k", contextLines=5000))
        await asyncio.sleep(0.2)
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(750, 0, 751, 0)})
        assert "text" in r, r
        sent = fake.chat_requests()[-1].body["messages"][1]["content"]
        assert "value_750 = " in sent and len(sent) < 8192 * 3


async def test_ten_concurrent_streams_and_instant_code_actions(fake, tmp_path):
    fake.configure(token_delay=0.02, chunk_chars=4)
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uris = [ed.open(f"f{i}.py", CODE) for i in range(5)]
        tasks = [
            asyncio.ensure_future(
                ed.command(
                    "kimi.explain" if i % 2 else "kimi.refactor",
                    {
                        "uri": uris[i % 5],
                        "range": rng(i // 5 * 5, 0, i // 5 * 5 + 5, 0),
                        "instruction": "rename total to acc",
                    },
                    timeout=60,
                )
            )
            for i in range(10)
        ]
        await ed.wait_for(lambda: len(fake.chat_requests()) == 10, what="ten streams")
        began = time.monotonic()
        actions = await ed.code_actions(uris[0], SEL)
        elapsed = time.monotonic() - began
        assert [a.title for a in actions][:2] == ["Kimi: Explain", "Kimi: Refactor"]
        assert not all(t.done() for t in tasks)  # streams were still running
        assert elapsed < 1.0, f"codeAction took {elapsed:.3f}s during streams"
        results = await asyncio.gather(*tasks)
        assert all("error" not in r for r in results), results
        assert sum(1 for r in results if "text" in r) == 5


class TinyProxy:
    """A loopback HTTP proxy for plain-http targets: one request per connection, counted."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, rest = head.split(b"\r\n", 1)
        method, target, version = line.split(b" ")
        if method == b"CONNECT":  # an https target: recorded, not tunnelled
            self.seen.append(f"CONNECT {target.decode()}")
            writer.close()
            return
        hostport = target.split(b"/")[2]
        path = b"/" + b"/".join(target.split(b"/")[3:])
        self.seen.append(path.decode())
        host, port = hostport.split(b":")
        up_r, up_w = await asyncio.open_connection(host.decode(), int(port))
        rest = b"\r\n".join(h for h in rest.split(b"\r\n") if not h.lower().startswith(b"connection:"))
        up_w.write(b" ".join([method, path, version]) + b"\r\nConnection: close\r\n" + rest)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)


async def test_proxy_is_used(fake, tmp_path):
    """kimi.proxy carries requests to the API, but never to a loopback base URL (it would see the key in clear)."""
    proxy = TinyProxy()
    url = await proxy.start()
    remote = "https://api.moonshot.invalid/v1"
    async with editor("visual-studio-code", tmp_path, base(fake, proxy=url)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename total to acc"})
        assert r["applied"] is True, r
        assert proxy.seen == []  # the fake on loopback is reached directly
        ed.configure(base(fake, proxy=url, baseUrl=remote))
        await asyncio.sleep(0.2)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert "error" in r and "CONNECT api.moonshot.invalid:443" in proxy.seen
        ed.configure(base(fake, proxy="http://127.0.0.1:9", baseUrl=remote))  # nothing listens there
        await asyncio.sleep(0.2)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert "proxy" in r["error"]["message"].lower()
    proxy.server.close()


async def test_tls_and_ca_bundle_failures_are_explained(fake, tmp_path):
    https_url = fake.base_url.replace("http://", "https://")
    async with editor("neovim", tmp_path, base(fake, baseUrl=https_url)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert "TLS" in r["error"]["message"] and "caBundle" in r["error"]["message"]
        ed.configure(base(fake, caBundle=str(tmp_path / "missing.pem")))
        await asyncio.sleep(0.2)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert "caBundle" in r["error"]["message"] and "missing.pem" in r["error"]["message"]


async def test_the_first_delta_is_not_held_back_by_the_rest_of_a_burst(fake, tmp_path):
    """A reply that arrives in one read: the first piece goes to the editor on its own, at once; the rest is
    coalesced per event-loop turn."""
    fake.configure(token_delay=0, chunk_chars=6)
    async with editor("neovim", tmp_path, base(fake, model="moonshot-v1-8k"), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        result = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        content = [s["text"] for s in ed.stream if s["kind"] == "content"]
        assert content[0] == result["text"][:6]
        assert "".join(content).strip() == result["text"]
        assert len(content) < len(result["text"]) / 6  # the rest was coalesced
