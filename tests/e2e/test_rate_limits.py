"""Moonshot's rate limits end to end, against the fake in tier-0 mode (1 request in flight, 3 a minute; the RPM
window shortened for the fake and the client alike): concurrent requests queue instead of failing, in order, and
say so in progress and `kimi/stream`; a queued request cancelled leaves the line; the CLI waits too."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness import FAKE_KEY, base, editor, rng, server_env
from kimi_lsp import errors
from kimi_lsp.fake import Fault
from kimi_lsp.kimi.http import ClientPool, KimiClient
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.kimi.rules import chat_body
from kimi_lsp.settings import Settings

WINDOW = 2.0  # seconds: the fake's RPM window and the client's (KIMI_LSP_RPM_WINDOW)
MARKERS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tier0(fake, monkeypatch):
    fake.configure(tier=0, rpm_window=WINDOW)
    monkeypatch.setattr("kimi_lsp.kimi.http.RETRY_BASE", 0.05)
    monkeypatch.setattr("kimi_lsp.kimi.limits.WINDOW", WINDOW)  # what KIMI_LSP_RPM_WINDOW does for a server
    return fake


def marker_of(record) -> str:
    text = repr(record.body)
    return next(m for m in MARKERS if f"{m}_value" in text)


def answered(fake) -> list[str]:
    """The markers of the chat requests the fake accepted, in the order it saw them."""
    return [marker_of(r) for r in fake.chat_requests() if r.error_type is None]


def refused(fake, kind: str = "rate_limit_reached_error") -> list[str]:
    return [marker_of(r) for r in fake.chat_requests() if r.error_type == kind]


# -- the client over loopback ------------------------------------------------------------------------------------


@pytest.fixture
async def kimi():
    pools: list[ClientPool] = []

    def make(fake, **settings) -> KimiClient:
        pool = pools[0] if pools else ClientPool()
        pools[:] = [pool]
        return KimiClient(pool, Settings(base_url=fake.base_url, thinking="disabled", **settings), FAKE_KEY)

    yield make
    for pool in pools:
        await pool.aclose()


def body_for(client: KimiClient, marker: str) -> dict:
    messages = [{"role": "user", "content": f"explain {marker}_value = 1"}]
    return chat_body(BUILTIN_MODELS["kimi-k2.5"], client.settings, messages)


async def test_concurrent_streams_queue_learn_and_finish_in_order(tier0, kimi):
    client = kimi(tier0)
    tier0.configure(first_token_delay=0.3)  # the first still runs when the others arrive
    told: dict[str, list[str]] = {m: [] for m in MARKERS[:3]}
    tasks = []
    for marker in MARKERS[:3]:
        tasks.append(
            asyncio.ensure_future(
                client.stream_chat(body_for(client, marker), lambda k, t: None, status=told[marker].append)
            )
        )
        await asyncio.sleep(0)  # each takes its ticket in turn
    replies = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(r.done and r.content for r in replies)
    assert answered(tier0) == ["alpha", "bravo", "charlie"]
    assert refused(tier0)  # bravo and charlie were refused at first, and still answered
    assert told["alpha"] == []
    assert "queued: rate limit, retrying in 1 s" in told["bravo"]
    assert any(t.startswith("queued: rate limit, retrying in") for t in told["charlie"])
    assert told["bravo"][-1] == told["charlie"][-1] == "waiting for the first token"
    gate = client._pool.gate(client.settings, FAKE_KEY)
    assert gate.cap() == 1 and gate.rpm() == 3 and gate.in_flight == 0 and gate.queued == 0
    assert tier0.in_flight() == 0


async def test_manual_cap_queues_without_a_single_429(fake, kimi):
    client = kimi(fake, max_concurrent_requests=1)
    fake.configure(token_delay=0.01)
    told: list[str] = []
    tasks = [
        asyncio.ensure_future(client.stream_chat(body_for(client, m), lambda k, t: None, status=told.append))
        for m in MARKERS[:3]
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert answered(fake) == ["alpha", "bravo", "charlie"] and not refused(fake)
    assert "queued: next, 1 running (rate limit: 1 at a time)" in told
    assert "queued: 1 request ahead (rate limit)" in told
    records = fake.chat_requests()
    assert all(a.time < b.time for a, b in zip(records, records[1:]))


async def test_a_cancelled_queued_stream_leaves_the_line(tier0, kimi):
    client = kimi(tier0, max_concurrent_requests=1)
    tier0.configure(token_delay=0.02)
    tasks = {}
    for marker in MARKERS[:3]:
        tasks[marker] = asyncio.ensure_future(client.stream_chat(body_for(client, marker), lambda k, t: None))
        await asyncio.sleep(0)
    gate = client._pool.gate(client.settings, FAKE_KEY)
    await asyncio.sleep(0.05)
    assert gate.in_flight == 1 and gate.queued == 2
    tasks["bravo"].cancel()
    await asyncio.sleep(0)
    assert gate.queued == 1
    assert (await asyncio.wait_for(tasks["charlie"], 20)).done
    assert tasks["alpha"].done() and tasks["bravo"].cancelled()
    assert answered(tier0) == ["alpha", "charlie"] and gate.in_flight == 0 and gate.queued == 0


async def test_time_out_while_queued_says_so(tier0, kimi):
    client = kimi(tier0, max_concurrent_requests=1)
    tier0.configure(first_token_delay=3)
    first = asyncio.ensure_future(client.stream_chat(body_for(client, "alpha"), lambda k, t: None))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(errors.TimedOut, match="still queued for the rate limit"):
        await client.stream_chat(body_for(client, "bravo"), lambda k, t: None, timeout=0.5)
    assert 0.4 < time.monotonic() - began < 3
    gate = client._pool.gate(client.settings, FAKE_KEY)
    assert gate.queued == 0 and gate.in_flight == 1
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gate.in_flight == 0 and answered(tier0) == ["alpha"]  # bravo was never sent


async def test_a_hint_longer_than_the_time_left_fails_at_once(tier0, kimi):
    client = kimi(tier0)
    tier0.configure(first_token_delay=3)
    first = asyncio.ensure_future(client.stream_chat(body_for(client, "alpha"), lambda k, t: None))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    with pytest.raises(errors.RateLimited, match="max concurrency: 1"):
        await client.stream_chat(body_for(client, "bravo"), lambda k, t: None, timeout=0.5)
    assert time.monotonic() - began < 0.4
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_quota_is_never_retried(tier0, kimi):
    client = kimi(tier0)
    for fault in ("quota", "suspended"):
        tier0.reset()
        tier0.configure(tier=0, rpm_window=WINDOW)
        tier0.script(fault, fault)
        with pytest.raises(errors.QuotaExceeded):
            await client.stream_chat(body_for(client, "alpha"), lambda k, t: None)
        assert len(tier0.chat_requests()) == 1


async def test_overload_stays_bounded(fake, kimi, monkeypatch):
    monkeypatch.setattr("kimi_lsp.kimi.http.RETRY_BASE", 0.05)
    client = kimi(fake)
    fake.script(*["overloaded"] * 5)
    told: list[str] = []
    with pytest.raises(errors.Overloaded):
        await client.stream_chat(body_for(client, "alpha"), lambda k, t: None, status=told.append)
    assert len(fake.chat_requests()) == 3 and "queued: Kimi is overloaded, retrying in 1 s" in told


async def test_rpm_refusals_are_not_bounded_by_the_retry_count(fake, kimi):
    fake.script(*[Fault(kind="rate_limit", wait=0)] * 5)  # RPM 429s, more than MAX_RETRIES, then an answer
    client = kimi(fake)
    reply = await client.stream_chat(body_for(client, "alpha"), lambda k, t: None, timeout=20)
    assert reply.done and len(fake.chat_requests()) == 6
    assert client._pool.gate(client.settings, FAKE_KEY).rpm() == 3  # the refused sends did not count


# -- the language server --------------------------------------------------------------------------------------------

SEL = rng(0, 0, 2, 0)


def doc(marker: str) -> str:
    return f"{marker}_value = 1\nprint({marker}_value)\n"


async def test_editor_requests_queue_in_order_and_one_is_cancelled(profile, tier0, tmp_path):
    env = server_env(KIMI_LSP_RPM_WINDOW=str(WINDOW))
    settings = base(tier0, requestTimeout=30)
    tier0.configure(first_token_delay=0.5)  # each answer holds the account's one slot for a while
    async with editor(profile, tmp_path, settings, env=env, init_options={"stream": True}) as ed:
        uris = {m: ed.open(f"{m}.py", doc(m)) for m in MARKERS}
        # three explains at once, before anything is known about the account
        tasks = []
        for i, marker in enumerate(MARKERS[:3], 1):
            tasks.append(asyncio.ensure_future(ed.command("kimi.explain", {"uri": uris[marker], "range": SEL}, 30)))
            await ed.wait_for(lambda i=i: len(tier0.chat_requests()) >= i, what=f"request {i} sent")
        results = await asyncio.wait_for(asyncio.gather(*tasks), 40)
        assert all(r.get("text") for r in results), results
        assert answered(tier0) == ["alpha", "bravo", "charlie"] and refused(tier0)
        status = [s["text"] for s in ed.stream if s["kind"] == "status"]
        assert any(t.startswith("queued: rate limit, retrying in") for t in status), status
        assert any("queued: rate limit, retrying in" in m for m in ed.progress_messages()), ed.progress_messages()
        by_request = {s["requestId"]: s.get("uri") for s in ed.stream if s["kind"] == "start"}
        done = [by_request[s["requestId"]] for s in ed.stream if s["kind"] == "done"]
        assert done == [uris[m] for m in MARKERS[:3]]  # finished in arrival order

        # now the account's limit is known: a slow request runs, two wait their turn, one of them is cancelled
        tier0.configure(first_token_delay=1.0)
        ed.stream.clear()
        first = asyncio.ensure_future(ed.command("kimi.explain", {"uri": uris["delta"], "range": SEL}, 30))
        await ed.wait_for(lambda: "delta" in answered(tier0), 10, what="delta running")
        second = ed.command_with_id("kimi.explain", {"uri": uris["echo"], "range": SEL}, "req-echo")

        def queued_texts(marker: str) -> list[str]:
            ids = {s["requestId"] for s in ed.stream if s["kind"] == "start" and s.get("uri") == uris[marker]}
            return [s["text"] for s in ed.stream if s["kind"] == "status" and s["requestId"] in ids]

        await ed.wait_for(lambda: any(t.startswith("queued:") for t in queued_texts("echo")), 10, what="echo queued")
        third = asyncio.ensure_future(ed.command("kimi.explain", {"uri": uris["foxtrot"], "range": SEL}, 30))
        await ed.wait_for(
            lambda: any("1 request ahead" in t for t in queued_texts("foxtrot")), 10, what="foxtrot behind echo"
        )
        ed.cancel_request("req-echo")
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(second, 10)
        await ed.wait_for(
            lambda: queued_texts("foxtrot")[-1].startswith("queued:") and "ahead" not in queued_texts("foxtrot")[-1],
            10,
            what="foxtrot moved up",
        )
        assert (await asyncio.wait_for(first, 30)).get("text")
        assert (await asyncio.wait_for(third, 30)).get("text")
        assert "echo" not in answered(tier0) and answered(tier0)[-2:] == ["delta", "foxtrot"]
        assert tier0.in_flight() == 0
        assert any("queued:" in m for m in ed.progress_messages())


# -- the command line ------------------------------------------------------------------------------------------------


def test_cli_waits_for_the_rate_limit(tier0, tmp_path):
    shutil.copy(ROOT / "examples" / "sample.py", tmp_path / "sample.py")
    with httpx.Client(base_url=tier0.base_url, headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10) as c:
        for _ in range(3):  # the minute's three requests are spent
            body = {"model": "kimi-k2.5", "messages": [{"role": "user", "content": "hi"}], "stream": False}
            assert c.post("/chat/completions", json=body).status_code == 200
    began = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "kimi_lsp", "run", "explain", "sample.py:4-9", "--base-url", tier0.base_url],
        cwd=tmp_path,
        env=server_env(KIMI_LSP_RPM_WINDOW=str(WINDOW)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "queued: rate limit, retrying in" in r.stderr and r.stdout.strip()
    assert time.monotonic() - began < 30
    assert [x.error_type for x in tier0.chat_requests()][3:] == ["rate_limit_reached_error", None]
