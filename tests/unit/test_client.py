"""The Kimi client against the fake over real sockets: connection reuse and the retry budget."""

from __future__ import annotations

import pytest

from kimi_lsp import errors
from kimi_lsp.fake import Fault
from kimi_lsp.kimi.http import ClientPool, KimiClient
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.kimi.rules import chat_body
from kimi_lsp.settings import Settings


@pytest.fixture
async def kimi(fake):
    pool = ClientPool()
    settings = Settings(base_url=fake.base_url, thinking="disabled")
    yield KimiClient(pool, settings, "sk-fake-valid-key"), pool, settings
    await pool.aclose()


async def test_streams_reuse_one_connection(kimi):
    """After [DONE] the rest of the body is read, so the connection returns to the pool (no new TLS per request)."""
    client, pool, settings = kimi
    body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, [{"role": "user", "content": "hi"}])
    for _ in range(3):
        reply = await client.stream_chat(body, lambda kind, text: None)
        assert reply.done and reply.content
    [conn] = pool.get(settings)._transport._pool.connections
    assert "Request Count: 3" in repr(conn)


async def test_retries_are_bounded(kimi, fake, monkeypatch):
    monkeypatch.setattr("kimi_lsp.kimi.http.RETRY_BASE", 0.01)
    client, _, settings = kimi
    fake.script(*["overloaded"] * 5)
    body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, [{"role": "user", "content": "hi"}])
    with pytest.raises(errors.Overloaded):
        await client.stream_chat(body, lambda kind, text: None)
    assert len(fake.chat_requests()) == 3  # the first try and two retries


async def test_cut_stream_is_a_failure(kimi, fake):
    client, _, settings = kimi
    fake.script(Fault(kind="cut", after_chunks=2))
    seen = []
    body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, [{"role": "user", "content": "hi"}])
    with pytest.raises(errors.StreamBroken):
        await client.stream_chat(body, lambda kind, text: seen.append(text))
    assert seen  # some text arrived, and still the reply is refused as a whole


async def test_on_sent_runs_once_the_request_is_written_before_any_delta(kimi, fake):
    """The server announces a request to the editor from `on_sent`; it must come before the answer, once
    per attempt (a retried request is sent again)."""
    client, _, settings = kimi
    events: list[str] = []
    body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, [{"role": "user", "content": "hi"}])
    await client.stream_chat(body, lambda kind, text: events.append(kind), on_sent=lambda: events.append("sent"))
    assert events[0] == "sent" and events.count("sent") == 1 and "content" in events
    events.clear()
    fake.script("overloaded")
    await client.stream_chat(body, lambda kind, text: events.append(kind), on_sent=lambda: events.append("sent"))
    assert events.count("sent") == 2 and events[1] == "sent"  # the failed try, then the retry
