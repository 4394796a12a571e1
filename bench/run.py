"""kimi-lsp benchmarks (issue 6): B1-B7 and the Copilot peer, against the project's fake Moonshot API.

    .venv/bin/python bench/run.py            # full run (~4-5 min), writes docs/benchmarks.md and bench/last-results.json
    .venv/bin/python bench/run.py --quick    # fewer repeats (~1.5 min); same table, marked quick
    .venv/bin/python bench/run.py --only B2,B6 --no-write   # some benchmarks, print only
    .venv/bin/python bench/run.py --only B7   # the prefix cache (bench/b7_prefix_cache.py); others' figures kept
    .venv/bin/python bench/run.py --only B8   # inline completion (bench/b8_completion.py); others' figures kept

Every figure drives the real `kimi-lsp` process over stdio with pytest-lsp's client and VS Code's client
capabilities; the fake runs in its own process on loopback (`--fake thread` runs it in this process). B7 drives
the CLI's request path instead (see bench/b7_prefix_cache.py); its last result is kept in bench/b7-results.json.
B8's last result is kept in bench/b8-results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import b7_prefix_cache as b7
import b8_completion as b8
from common import (
    ROOT,
    Fake,
    Session,
    bare_cmd,
    cpu_seconds,
    kimi_cmd,
    loadavg,
    machine,
    median,
    ms,
    pct,
    rng,
    rss_kb,
    server_env,
    session,
    tree_rss_kb,
)

COPILOT_DIR = ROOT / ".tools" / "copilot" / "node_modules" / "@github"
COPILOT_JS = COPILOT_DIR / "copilot-language-server" / "dist" / "language-server.js"
COPILOT_BIN = COPILOT_DIR / "copilot-language-server-linux-x64" / "copilot-language-server"
COPILOT_INSTALL = "npm install --prefix /work/main/.tools/copilot @github/copilot-language-server"

HEAVY_IMPORTS = "httpx,httpx_sse,pydantic,kimi_lsp.settings"
SETTLE = 2.0  # seconds after initialize before idle memory is read
B3_DELAY = 0.2  # the fake's first-token delay in B3
B4_STREAMS, B4_CHARS, B4_CHUNK, B4_TOKEN_DELAY = 50, 2000, 4, 0.005  # 500 tokens at 200 tokens/s

log = logging.getLogger("bench")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {text}", flush=True)


def python_source(lines: int, width: int = 0) -> str:
    """A plausible Python file of `lines` lines (padded to `width` characters when given)."""
    out = []
    for i in range(lines):
        if i % 10 == 0:
            line = f"def function_{i}(total, items):"
        elif i % 10 == 9:
            line = "    return total"
        else:
            line = f"    total = total + items[{i % 7}] * {i}  # step {i}"
        if width:  # every line exactly `width` characters with its newline
            line = line.ljust(width - 1, ".")[: width - 1]
        out.append(line)
    return "\n".join(out) + "\n"


def kimi_settings(fake: Fake, **extra: Any) -> dict:
    return {"baseUrl": fake.base_url, **extra}


# ------------------------------------------------------------------------------------- B1, B5 idle, peer


async def one_start(cmd: list[str], env: dict) -> dict:
    s = Session(cmd, env=env)
    try:
        t = await s.start()
        await asyncio.sleep(SETTLE)
        return {"start_ms": ms(t), "rss_mb": (rss_kb(s.pid) or 0) / 1024, "tree_rss_mb": tree_rss_kb(s.pid) / 1024}
    finally:
        await s.stop()


async def bench_start(rounds: int, with_peer: bool, quick: bool) -> dict:
    targets: dict[str, tuple[list[str], dict]] = {
        "bare": (bare_cmd(), server_env()),
        "kimi": (kimi_cmd(), server_env()),
    }
    if not quick:  # attribution: the bare server plus kimi-lsp's heavy dependencies (httpx, pydantic models)
        targets["bare+deps"] = (bare_cmd(), {**server_env(), "BARE_IMPORTS": HEAVY_IMPORTS})
    peer_note = ""
    if with_peer:
        if COPILOT_BIN.exists():
            targets["copilot"] = ([str(COPILOT_BIN), "--stdio"], dict(os.environ))
        if COPILOT_JS.exists() and not quick:
            targets["copilot-npm-bin"] = (["node", str(COPILOT_JS), "--stdio"], dict(os.environ))
        if not COPILOT_BIN.exists() and not COPILOT_JS.exists():
            peer_note = f"not installed: run `{COPILOT_INSTALL}`"
    samples: dict[str, list[dict]] = {k: [] for k in targets}
    errors: dict[str, str] = {}
    names = list(targets)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no target always goes first
        for name in order:
            if name in errors:
                continue
            cmd, env = targets[name]
            try:
                samples[name].append(await one_start(cmd, env))
            except Exception as exc:  # a peer that cannot run here: say why, keep going
                errors[name] = f"{type(exc).__name__}: {exc}"
        say(
            f"B1 round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {samples[n][-1]['start_ms']:.0f} ms" for n in names if samples[n])
        )
    out: dict[str, Any] = {"rounds": rounds, "errors": errors, "peer_note": peer_note}
    for name, rows in samples.items():
        if rows:
            out[name] = {k: median([row[k] for row in rows]) for k in rows[0]}
            out[name]["all_start_ms"] = [round(row["start_ms"], 1) for row in rows]
    return out


# ---------------------------------------------------------------------------------------------- B2


async def bench_code_actions(fake: Fake, runs: int, requests: int, client: str = "pytest-lsp") -> dict:
    s = session(client, kimi_cmd(), settings=kimi_settings(fake), profile="B2")
    await s.start()
    try:
        uri = s.open("big.py", python_source(20_000))
        rnd = random.Random(2)
        actions = await s.code_action(uri, 100, 0, 110, 0)
        assert len(actions) >= 4, actions
        for _ in range(100):  # warm-up
            await s.code_action(uri, 5, 0, 9, 0)
        p99s, p50s, maxes, cpus = [], [], [], []
        for run in range(runs):
            lat = []
            cpu0 = cpu_seconds(s.pid)
            for _ in range(requests):
                a = rnd.randrange(0, 19_900)
                t0 = time.perf_counter()
                await s.code_action(uri, a, 0, a + rnd.randint(1, 30), 0)
                lat.append(ms(time.perf_counter() - t0))
            cpus.append(ms(cpu_seconds(s.pid) - cpu0) / requests)
            p99s.append(pct(lat, 99))
            p50s.append(pct(lat, 50))
            maxes.append(max(lat))
            say(
                f"B2 run {run + 1}/{runs}: p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms, max {maxes[-1]:.1f} ms, server CPU {cpus[-1]:.2f} ms/request"
            )
        return {
            "runs": runs,
            "requests": requests,
            "p99_ms": median(p99s),
            "p50_ms": median(p50s),
            "max_ms": median(maxes),
            "p99_each": p99s,
            "cpu_ms_per_request": median(cpus),
        }
    finally:
        await s.stop()


# ---------------------------------------------------------------------------------------------- B3


async def bench_first_token(fake: Fake, n: int, client: str = "pytest-lsp") -> dict:
    fake.reset()
    fake.configure(first_token_delay=B3_DELAY, token_delay=0.0, chunk_chars=6)
    s = session(
        client,
        kimi_cmd(),
        settings=kimi_settings(fake, model="kimi-k2.5", thinking="disabled"),
        init_options={"stream": True},
        profile=f"B3-{client}",
    )
    await s.start()
    try:
        uri = s.open("small.py", python_source(60))
        await asyncio.sleep(0.3)
        overheads, starts, pre, post = [], [], [], []
        cold = None
        for i in range(n + 3):  # the first 3 warm up (the first one also opens the HTTP connection)
            mark = len(s.stream)
            t0 = time.perf_counter()
            res = await s.command("kimi.explain", {"uri": uri, "range": rng(i % 50, 0, i % 50 + 5, 0)})
            assert "text" in res, res
            events = s.stream[mark:]
            first = next(t for t, e in events if e.get("kind") == "content")
            start = next(t for t, e in events if e.get("kind") == "start")
            reasoning = [e for _, e in events if e.get("kind") == "reasoning"]
            assert not reasoning, "B3 needs a model without thinking"
            over = ms(first - t0) - ms(B3_DELAY)
            if i == 0:
                cold = over
            if i >= 3:
                overheads.append(over)
                starts.append(ms(start - t0))
                arrived = [r["time"] for r in fake.requests() if r["path"] == "/v1/chat/completions"][-1]
                pre.append(ms(arrived - t0))  # command sent -> the fake has read the chat request
                post.append(ms(first - arrived) - ms(B3_DELAY))  # the fake's pause -> content at the client
        floor = await fake_floor(fake, 10)
        say(f"B3: the fake alone (raw HTTP client, same request): first content {floor:.2f} ms after its delay")
        say(
            f"B3: median overhead {median(overheads):.2f} ms (cold {cold:.1f} ms), start notification at "
            f"{median(starts):.2f} ms; before the HTTP request {median(pre):.2f} ms, after the fake's pause "
            f"{median(post):.2f} ms"
        )
        return {
            "n": n,
            "client": client,
            "pre_ms": median(pre),
            "post_ms": median(post),
            "fake_floor_ms": floor,
            "delay_ms": ms(B3_DELAY),
            "median_ms": median(overheads),
            "p90_ms": pct(overheads, 90),
            "cold_ms": cold,
            "start_notification_ms": median(starts),
            "all_ms": [round(x, 2) for x in overheads],
        }
    finally:
        await s.stop()


async def fake_floor(fake: Fake, n: int) -> float:
    """The fake's own share of B3: the last chat request replayed straight to the fake over one keep-alive
    socket; request written -> first non-empty content chunk read, minus the first-token delay (median)."""
    import re
    from urllib.parse import urlsplit

    chat = [r for r in fake.requests() if r["path"] == "/v1/chat/completions"][-1]
    body = json.dumps(chat["body"]).encode()
    url = urlsplit(fake.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer sk-fake-valid-key\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    first_content = re.compile(rb'"content": ?"[^"]')
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(head + body)
            buf, got = b"", None
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError("the fake closed the connection")
                buf += data
                if got is None and first_content.search(buf):
                    got = time.perf_counter()
                if buf.endswith(b"0\r\n\r\n"):  # end of the chunked body
                    break
            out.append(ms(got - t0) - ms(B3_DELAY))
    finally:
        writer.close()
    return median(out)


# ---------------------------------------------------------------------------------------------- B4


async def bench_concurrent(fake: Fake, runs: int, client: str = "lean") -> dict:
    fake.reset()
    fake.configure(first_token_delay=0.0, token_delay=B4_TOKEN_DELAY, chunk_chars=B4_CHUNK)
    content = ("word " * (B4_CHARS // 5 + 1))[:B4_CHARS]
    reply = {"kind": "reply", "content": content}
    s = session(
        client,
        kimi_cmd(),
        settings=kimi_settings(fake, model="kimi-k2.5", thinking="disabled"),
        init_options={"stream": True},
        profile=f"B4-{client}",
    )
    await s.start()
    try:
        uri = s.open("streams.py", python_source(200))
        await asyncio.sleep(0.3)
        fake.script([{"kind": "reply", "content": "warm"}])
        await s.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)})
        rows = []
        for run in range(runs):
            fake.script([reply])
            t0 = time.perf_counter()
            res = await s.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 2, 0)})
            single = time.perf_counter() - t0
            assert len(res["text"]) == B4_CHARS, len(res["text"])

            fake.script([reply] * B4_STREAMS)
            cpu0 = (cpu_seconds(s.pid), cpu_seconds(fake.pid) if fake.pid else float("nan"), time.process_time())
            done_at: list[float] = []
            probe: list[float] = []
            t0 = time.perf_counter()

            async def one(i: int) -> None:
                r = await s.command("kimi.explain", {"uri": uri, "range": rng(i * 3, 0, i * 3 + 2, 0)}, timeout=120)
                assert len(r.get("text", "")) == B4_CHARS, r
                done_at.append(time.perf_counter())

            jobs = asyncio.gather(*(one(i) for i in range(B4_STREAMS)))
            await asyncio.sleep(0.05)  # let the streams start before probing
            while not jobs.done():
                a = random.randrange(0, 190)
                p0 = time.perf_counter()
                await s.code_action(uri, a, 0, a + 3, 0)
                probe.append(ms(time.perf_counter() - p0))
                await asyncio.sleep(0.01)
            await jobs
            total = max(done_at) - t0
            cpu1 = (cpu_seconds(s.pid), cpu_seconds(fake.pid) if fake.pid else float("nan"), time.process_time())
            row = {
                "single_s": single,
                "all_s": total,
                "ratio": total / single,
                "probe_p99_ms": pct(probe, 99),
                "probe_p50_ms": pct(probe, 50),
                "probes": len(probe),
                "cpu_server_s": cpu1[0] - cpu0[0],
                "cpu_fake_s": cpu1[1] - cpu0[1],
                "cpu_client_s": cpu1[2] - cpu0[2],
            }
            rows.append(row)
            say(
                f"B4 ({client} client) run {run + 1}/{runs}: one {single:.2f} s, {B4_STREAMS} in {total:.2f} s (x{row['ratio']:.2f}), "
                f"codeAction p99 {row['probe_p99_ms']:.1f} ms over {len(probe)}; CPU s server "
                f"{row['cpu_server_s']:.2f} fake {row['cpu_fake_s']:.2f} client {row['cpu_client_s']:.2f}"
            )
        keys = rows[0].keys()
        return {"runs": runs, "client": client, **{k: median([r[k] for r in rows]) for k in keys}, "each": rows}
    finally:
        await s.stop()


# ---------------------------------------------------------------------------------------------- B5


async def bench_memory(fake: Fake, requests: int, client: str = "pytest-lsp") -> dict:
    fake.reset()
    fake.configure(first_token_delay=0.0, token_delay=0.0, chunk_chars=24)
    s = session(client, kimi_cmd(), settings=kimi_settings(fake), init_options={"stream": True})
    await s.start()
    try:
        await asyncio.sleep(SETTLE)
        idle = rss_kb(s.pid) / 1024
        uri = s.open("mem.py", python_source(400))
        rnd = random.Random(5)
        warm_at = min(100, requests // 5)
        after_warm = None
        kinds = {"explain": 0, "refactor": 0, "codeAction": 0}
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            a = (i * 7 + rnd.randrange(0, 4)) % 380  # requests in flight together never share a range
            kind = ("explain", "refactor", "codeAction")[i % 3]
            kinds[kind] += 1
            if kind == "codeAction":
                await s.code_action(uri, a, 0, a + 5, 0)
            elif kind == "explain":
                r = await s.command("kimi.explain", {"uri": uri, "range": rng(a, 0, a + 5, 0)})
                assert "text" in r, r
            else:
                r = await s.command(
                    "kimi.refactor", {"uri": uri, "range": rng(a, 0, a + 5, 0), "instruction": "rename total to acc"}
                )
                assert "applied" in r, r

        done = 0
        while done < requests:  # 4 at a time, like a busy user with a few requests in flight
            batch = min(4, requests - done)
            await asyncio.gather(*(one(done + k) for k in range(batch)))
            done += batch
            if after_warm is None and done >= warm_at:
                after_warm = rss_kb(s.pid) / 1024
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(SETTLE)
        final = rss_kb(s.pid) / 1024
        say(
            f"B5: idle {idle:.1f} MB, after {warm_at} requests {after_warm:.1f} MB, after {requests} "
            f"{final:.1f} MB ({elapsed:.1f} s)"
        )
        return {
            "idle_mb": idle,
            "after_warmup_mb": after_warm,
            "warmup_requests": warm_at,
            "final_mb": final,
            "growth_mb": final - idle,
            "growth_after_warmup_mb": final - after_warm,
            "requests": requests,
            "kinds": kinds,
            "seconds": elapsed,
        }
    finally:
        await s.stop()


# ---------------------------------------------------------------------------------------------- B6


def big_document() -> str:
    return python_source(100_000, width=50)  # 100,000 lines of 50 characters: 5.0 MB


def edit_script(n: int, lines: int, seed: int = 7) -> list[tuple[int, int, int, int, str]]:
    """Typing-like edits: mostly one character inserted, some deletions, some new lines."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        line, col = rnd.randrange(1, lines - 2), rnd.randrange(0, 40)
        roll = rnd.random()
        if roll < 0.7:
            out.append((line, col, line, col, rnd.choice("abcxyz_ ")))
        elif roll < 0.9:
            out.append((line, col, line, col + 1, ""))
        else:
            out.append((line, col, line, col, "\n"))
    return out


def micro_apply(n: int) -> dict:
    """The server-side cost alone: the same edits applied in this process to pygls' TextDocument and to
    kimi_lsp.lsp.documents.FastTextDocument (no IPC, no JSON)."""
    from lsprotocol import types as lsp
    from pygls.workspace import TextDocument

    from kimi_lsp.lsp.documents import FastTextDocument

    text = big_document()
    script = edit_script(n, 100_000)
    out = {}
    for name, cls in (("pygls", TextDocument), ("fast", FastTextDocument)):
        doc = cls("file:///big.py", text, version=1)
        lat = []
        gc.collect()
        for l1, c1, l2, c2, new in script:
            change = lsp.TextDocumentContentChangePartial(
                range=lsp.Range(start=lsp.Position(line=l1, character=c1), end=lsp.Position(line=l2, character=c2)),
                text=new,
            )
            t0 = time.perf_counter()
            doc.apply_change(change)
            lat.append(ms(time.perf_counter() - t0))
        out[name] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "source": doc.source}
    same = out["pygls"].pop("source") == out["fast"].pop("source")
    return {"n": n, **out, "same_text": same}


async def bench_edits(fake: Fake, n: int, client: str = "pytest-lsp") -> dict:
    s = session(client, kimi_cmd(), settings=kimi_settings(fake), profile="B6")
    await s.start()
    try:
        text = big_document()
        uri = s.open("huge.py", text)
        await s.code_action(uri, 0, 0, 0, 0, timeout=60)  # the open has been processed

        async def cheap() -> float:
            t0 = time.perf_counter()
            await s.code_action(uri, 5, 0, 5, 0)  # empty range, no diagnostics: answers [] at once
            return ms(time.perf_counter() - t0)

        for _ in range(50):
            await cheap()
        base = [await cheap() for _ in range(300)]
        floor = median(base)
        costs = []
        for l1, c1, l2, c2, new in edit_script(n, 100_000):
            t0 = time.perf_counter()
            s.edit(uri, l1, c1, l2, c2, new)
            await s.code_action(uri, 5, 0, 5, 0)
            costs.append(ms(time.perf_counter() - t0) - floor)
        say(
            f"B6: per-edit p50 {pct(costs, 50):.2f} ms, p99 {pct(costs, 99):.2f} ms "
            f"(cheap request alone: median {floor:.2f} ms, p99 {pct(base, 99):.2f} ms)"
        )
        return {
            "n": n,
            "p50_ms": pct(costs, 50),
            "p99_ms": pct(costs, 99),
            "baseline_ms": floor,
            "baseline_p99_ms": pct(base, 99),
            "doc_mb": len(text.encode()) / 1e6,
        }
    finally:
        await s.stop()


# --------------------------------------------------------------------------------------------- report


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("**pass**" if ok else "**FAIL**")


def render(res: dict, args: argparse.Namespace) -> str:
    m = res["machine"]
    rows = []
    b1 = res.get("B1")
    if b1 and "kimi" in b1 and "bare" in b1:
        ratio = b1["kimi"]["start_ms"] / b1["bare"]["start_ms"]
        rows.append(
            (
                "B1",
                f"cold start: spawn → `initialize` result (median of {b1['rounds']} rounds)",
                "≤ 1.1 × bare pygls",
                f"{b1['kimi']['start_ms']:.0f} ms vs bare {b1['bare']['start_ms']:.0f} ms = **{ratio:.2f} ×**",
                verdict(ratio <= 1.1),
            )
        )
    b2 = res.get("B2")
    if b2:
        rows.append(
            (
                "B2",
                f"`textDocument/codeAction`, 20,000-line document, {b2['requests']:,} requests "
                f"(median of {b2['runs']} runs)",
                "p99 ≤ 5 ms",
                f"p99 **{b2['p99_ms']:.2f} ms** (p50 {b2['p50_ms']:.2f} ms)",
                verdict(b2["p99_ms"] <= 5),
            )
        )
    b3 = res.get("B3")
    if b3:
        rows.append(
            (
                "B3",
                f"first-token overhead: `kimi.explain` sent → first `kimi/stream` content, minus the "
                f"fake's {b3['delay_ms']:.0f} ms first-token delay ({b3['n']} requests)",
                "median ≤ 5 ms",
                f"median **{b3['median_ms']:.2f} ms** (p90 {b3['p90_ms']:.2f}; first request of a session "
                f"{b3['cold_ms']:.1f})",
                verdict(b3["median_ms"] <= 5),
            )
        )
    b4 = res.get("B4")
    if b4:
        rows.append(
            (
                "B4",
                f"{B4_STREAMS} concurrent streamed explains, 500 tokens each at 200 tokens/s "
                f"(median of {b4['runs']} runs)",
                "all done ≤ 1.2 × one request",
                f"one {b4['single_s']:.2f} s, {B4_STREAMS} in {b4['all_s']:.2f} s = **{b4['ratio']:.2f} ×**",
                verdict(b4["ratio"] <= 1.2),
            )
        )
        rows.append(
            (
                "B4",
                "`codeAction` latency while those 50 stream",
                "p99 ≤ 20 ms",
                f"p99 **{b4['probe_p99_ms']:.1f} ms** (p50 {b4['probe_p50_ms']:.1f}; {b4['probes']:.0f} probes)",
                verdict(b4["probe_p99_ms"] <= 20),
            )
        )
    b5 = res.get("B5")
    if b5:
        rows.append(
            (
                "B5",
                "resident memory, idle after `initialize` (VmRSS, settings pulled, 2 s settled)",
                "≤ 60 MB",
                f"**{b5['idle_mb']:.1f} MB**",
                verdict(b5["idle_mb"] <= 60),
            )
        )
        rows.append(
            (
                "B5",
                f"growth after {b5['requests']:,} requests (explain / refactor / codeAction, 4 in flight)",
                "≤ 10 MB",
                f"**{b5['growth_mb']:+.1f} MB** ({b5['final_mb']:.1f} MB; {b5['growth_after_warmup_mb']:+.1f} MB "
                f"after the first {b5['warmup_requests']})",
                verdict(b5["growth_mb"] <= 10),
            )
        )
    b6 = res.get("B6")
    if b6:
        rows.append(
            (
                "B6",
                f"{b6['n']:,} incremental `didChange` edits to a {b6['doc_mb']:.1f} MB document",
                "p99 ≤ 2 ms per edit",
                f"p99 **{b6['p99_ms']:.2f} ms** (p50 {b6['p50_ms']:.2f})",
                verdict(b6["p99_ms"] <= 2),
            )
        )

    b7_res = res.get("B7") or b7.saved()
    if b7_res:
        rows.append(b7.table_row(b7_res))
    b8_res = res.get("B8") or b8.saved()
    if b8_res:
        rows += b8.table_rows(b8_res)

    out = [
        "# Benchmarks",
        "",
        "Issue 6's targets, measured by `bench/run.py` against the project's fake Moonshot API on loopback. "
        "Every figure drives the real `kimi-lsp` process over stdio with VS Code's client capabilities, through "
        "pytest-lsp's client (B4: a lean JSON-RPC client, see the notes); each is the median of repeated runs. "
        "The server ships `kimi_lsp.lsp.documents` (installed at `initialize`).",
        "",
        "```sh",
        ".venv/bin/python bench/run.py            # full run, about 4-5 minutes; rewrites this file",
        ".venv/bin/python bench/run.py --quick    # fewer repeats, under 2 minutes",
        ".venv/bin/python bench/run.py --only B2,B6 --no-write   # some benchmarks, printed only",
        ".venv/bin/python bench/run.py --render-only   # rewrite this file from bench/last-results.json + bench/NOTES.md",
        "```",
        "",
        f"## Last run: {res['when']}{' (--quick)' if args.quick else ''}",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| `nproc` | {m['nproc']} |",
        f"| memory (`free -h`) | {_free_line(m['free'])} |",
        f"| Python | {m['python']} |",
        f"| kernel | {m['kernel']} |",
        f"| node (peer) | {m['node']} |",
        f"| load average at start / end | {res['load_start']} / {res['load_end']} (2 cores shared with other "
        "engineers' test runs) |",
        f"| fake API | {res['fake_mode']} |",
        f"| wall time | {res['seconds']:.0f} s |",
        "",
        "| id | what | target | measured | result |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {' | '.join(r)} |" for r in rows]
    out += ["", *peer_section(res), ""]
    if b7_res:
        out += [*b7.section(b7_res), ""]
    if b8_res:
        out += [*b8.section(b8_res), ""]
    out += [*detail_section(res), ""]
    notes = Path(__file__).resolve().parent / "NOTES.md"
    if notes.exists():
        out += [notes.read_text().rstrip(), ""]
    return "\n".join(out)


def _free_line(free: str) -> str:
    for line in free.splitlines():
        if line.startswith("Mem:"):
            parts = line.split()
            return f"{parts[1]} total, {parts[-1]} available"
    return free.replace("\n", " ")


def peer_section(res: dict) -> list[str]:
    b1 = res.get("B1")
    out = ["## Peer: GitHub Copilot language server", ""]
    if not b1:
        return out + ["Not measured in this run (`--only` without B1)."]
    if b1.get("peer_note"):
        return out + [f"Not measured: {b1['peer_note']}."]
    k = b1["kimi"]
    out += [
        "Same rounds as B1, interleaved with kimi-lsp and the bare server; no sign-in (it answers `initialize` "
        'without one). Memory is VmRSS 2 s after `initialize`; "tree" adds the processes the server started.',
        "",
        "| server | start → `initialize` result | RSS | RSS incl. child processes | kimi-lsp ÷ it (start, RSS) |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "kimi": "kimi-lsp",
        "bare": "bare pygls (bench/bare_server.py)",
        "bare+deps": f"bare pygls importing {HEAVY_IMPORTS.replace(',', ', ')} (attribution, not a peer)",
        "copilot": "copilot-language-server (native linux-x64 binary from npm)",
        "copilot-npm-bin": "copilot-language-server via its npm bin (`node dist/language-server.js`)",
    }
    for name in ("kimi", "bare", "bare+deps", "copilot", "copilot-npm-bin"):
        r = b1.get(name)
        if not r:
            continue
        ratio = "" if name == "kimi" else f"{k['start_ms'] / r['start_ms']:.2f} ×, {k['rss_mb'] / r['rss_mb']:.2f} ×"
        out.append(
            f"| {labels[name]} | {r['start_ms']:.0f} ms | {r['rss_mb']:.1f} MB | {r['tree_rss_mb']:.1f} MB | {ratio} |"
        )
    for name, err in b1.get("errors", {}).items():
        out.append(f"\n{labels.get(name, name)} could not be measured: `{err}`")
    return out


def detail_section(res: dict) -> list[str]:
    out = ["## Details of this run", ""]
    if "B1" in res:
        b1 = res["B1"]
        out.append(
            "- B1 start samples (ms): "
            + "; ".join(
                f"{n}: {', '.join(str(x) for x in b1[n]['all_start_ms'])}"
                for n in ("bare", "bare+deps", "kimi", "copilot", "copilot-npm-bin")
                if n in b1
            )
        )
    for key in ("B2",):
        if key in res:
            out.append(
                f"- {key} p99 of each run (ms): {', '.join(f'{x:.2f}' for x in res[key]['p99_each'])}; "
                f"slowest single request (median over runs) {res[key]['max_ms']:.1f} ms; server CPU "
                f"{res[key]['cpu_ms_per_request']:.2f} ms per request (utime+stime ÷ requests)."
            )
    for key in ("B3", "B3lean"):
        if key in res:
            b3 = res[key]
            out.append(
                f"- {key} ({b3['client']} client): `kimi/stream` `start` at {b3['start_notification_ms']:.2f} ms; "
                f"the chat request reaches the fake {b3['pre_ms']:.2f} ms after the command is sent; first "
                f"content at the client {b3['post_ms']:.2f} ms after the fake's delay ends, of which the fake "
                f"alone takes {b3['fake_floor_ms']:.2f} ms (same request replayed over a raw socket); overhead "
                f"median {b3['median_ms']:.2f} ms; samples (ms): {', '.join(str(x) for x in b3['all_ms'])}."
            )
    if "B4" in res:
        for i, r in enumerate(res["B4"]["each"], 1):
            out.append(
                f"- B4 run {i}: one request {r['single_s']:.2f} s, 50 in {r['all_s']:.2f} s "
                f"(× {r['ratio']:.2f}); codeAction p50 {r['probe_p50_ms']:.1f} / p99 {r['probe_p99_ms']:.1f} ms; "
                f"CPU seconds during the 50: server {r['cpu_server_s']:.2f}, fake {r['cpu_fake_s']:.2f}, "
                f"benchmark client {r['cpu_client_s']:.2f}."
            )
    if "B4pytest" in res:
        r = res["B4pytest"]
        out.append(
            f"- B4 with pytest-lsp's client instead (1 run): one request {r['single_s']:.2f} s, 50 in "
            f"{r['all_s']:.2f} s (× {r['ratio']:.2f}); codeAction p99 {r['probe_p99_ms']:.1f} ms; CPU seconds: "
            f"server {r['cpu_server_s']:.2f}, fake {r['cpu_fake_s']:.2f}, client {r['cpu_client_s']:.2f} "
            "(the client is the bottleneck)."
        )
    if "B5" in res:
        b5 = res["B5"]
        out.append(
            f"- B5: {b5['kinds']} in {b5['seconds']:.1f} s; RSS idle {b5['idle_mb']:.1f} → after "
            f"{b5['warmup_requests']} requests {b5['after_warmup_mb']:.1f} → after {b5['requests']} "
            f"{b5['final_mb']:.1f} MB."
        )
    for key in ("B6",):
        if key in res:
            b6 = res[key]
            out.append(
                f"- {key}: cheap request alone median {b6['baseline_ms']:.2f} ms (p99 "
                f"{b6['baseline_p99_ms']:.2f}); per-edit cost p50 {b6['p50_ms']:.2f}, p99 {b6['p99_ms']:.2f} ms."
            )
    if "B6micro" in res:
        mic = res["B6micro"]
        out.append(
            f"- B6 in-process (apply_change alone, same {mic['n']} edits): pygls TextDocument p50 "
            f"{mic['pygls']['p50_ms']:.2f} / p99 {mic['pygls']['p99_ms']:.2f} ms; FastTextDocument p50 "
            f"{mic['fast']['p50_ms']:.3f} / p99 {mic['fast']['p99_ms']:.3f} ms; same final text: "
            f"{mic['same_text']}."
        )
    return out


# ----------------------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> dict:
    only = {x.strip().upper() for x in args.only.split(",")} if args.only else None

    def want(name: str) -> bool:
        return only is None or name in only

    q, c = args.quick, args.client
    res: dict[str, Any] = {
        "machine": machine(),
        "when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_start": loadavg(),
        "fake_mode": args.fake,
        "client": c,
        "b4_client": args.b4_client,
        "quick": args.quick,
    }
    t0 = time.perf_counter()
    if want("B1") or want("PEER"):
        say("B1 / peer: cold starts")
        res["B1"] = await bench_start(3 if q else 7, with_peer=not args.no_peer, quick=q)
    fake = Fake(args.fake).start()
    try:
        if want("B2"):
            say("B2: code actions on a 20,000-line document")
            res["B2"] = await bench_code_actions(fake, 1 if q else 3, 1000, client=c)
        if want("B3"):
            say("B3: first-token overhead")
            res["B3"] = await bench_first_token(fake, 8 if q else 25, client=c)
            if not q and c != "lean":
                res["B3lean"] = await bench_first_token(fake, 25, client="lean")
        if want("B4"):
            say("B4: 50 concurrent streams")
            res["B4"] = await bench_concurrent(fake, 1 if q else 3, client=args.b4_client)
            if not q and args.b4_client != "pytest-lsp":
                res["B4pytest"] = await bench_concurrent(fake, 1, client="pytest-lsp")
        if want("B5"):
            say("B5: memory")
            res["B5"] = await bench_memory(fake, 300 if q else 1000, client=c)
        if want("B6"):
            from check_documents import check

            if check(100 if q else 300) != 0:
                raise SystemExit("kimi_lsp.lsp.documents disagrees with pygls; B6 (fast) not run")
            n = 300 if q else 1000
            say("B6: incremental edits to a 5 MB document")
            res["B6micro"] = micro_apply(n)
            res["B6"] = await bench_edits(fake, n, client=c)
        if want("B8"):
            say("B8: inline completion (overhead, cache hits, a typing session)")
            res["B8"] = await b8.bench(fake, client=c, quick=q)
    finally:
        fake.stop()
    if want("B7"):
        say("B7: the prefix cache over a scripted session, before and after the prompt layout")
        res["B7"] = await b7.bench()
    res["seconds"] = time.perf_counter() - t0
    res["load_end"] = loadavg()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under 2 minutes)")
    parser.add_argument(
        "--only",
        help="comma-separated subset: B1,B2,B3,B4,B5,B6,B7,B8 (B1 includes the peer); with B7 and/or B8 alone, "
        "the other figures in docs/benchmarks.md are kept from bench/last-results.json",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the Copilot peer in B1")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument(
        "--fake",
        choices=["process", "thread"],
        default="process",
        help="run the fake Moonshot API in its own process (default) or in a thread here",
    )
    parser.add_argument(
        "--client",
        choices=["pytest-lsp", "lean"],
        default="pytest-lsp",
        help="the editor driving the server (default pytest-lsp's client); B4 has its own",
    )
    parser.add_argument(
        "--b4-client",
        choices=["pytest-lsp", "lean"],
        default="lean",
        help="B4's editor: lean (default) because pytest-lsp's client cannot keep up with 50 streams",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="attach py-spy to the server in B2-B6 and write collapsed stacks to DIR",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite docs/benchmarks.md from bench/last-results.json and bench/NOTES.md",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("pygls", "pytest_lsp"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if args.render_only:  # rewrite docs/benchmarks.md from bench/last-results.json (e.g. after editing NOTES.md)
        res = json.loads((ROOT / "bench" / "last-results.json").read_text())
        args.quick = res.get("quick", False)
        args.output.write_text(render(res, args))
        return 0
    if args.profile:
        from common import Profiler

        Profiler.directory = args.profile
    res = asyncio.run(main_async(args))
    if "B7" in res and not args.no_write:
        b7.save(res["B7"])
    if "B8" in res and not args.no_write:
        b8.save(res["B8"])
    alone = {x.strip().upper() for x in args.only.split(",")} if args.only else set()
    if alone and alone <= {"B7", "B8"}:
        # B7 and/or B8 alone: the rest of the page stays as last measured; only their rows and sections are new
        last = json.loads((ROOT / "bench" / "last-results.json").read_text())
        last.pop("B8", None)  # a full run's B8 gives way to the one just measured (bench/b8-results.json)
        args.quick = last.get("quick", False)
        text = render(last, args)
        mods = [(name, m) for name, m in (("B7", b7), ("B8", b8)) if name in res]
        if args.no_write:
            for name, m in mods:
                print("\n".join(m.section(res[name])))
        else:
            args.output.write_text(text)
            names = " and ".join(name for name, _ in mods)
            files = ", ".join(str(m.RESULTS.relative_to(ROOT)) for _, m in mods)
            say(f"wrote {files} and the {names} parts of {args.output.relative_to(ROOT)}")
        if "B7" in res:
            print("| " + " | ".join(b7.table_row(res["B7"])) + " |")
        if "B8" in res:
            for row in b8.table_rows(res["B8"]):
                print("| " + " | ".join(row) + " |")
        return 0
    text = render(res, args)
    if args.no_write:
        print(text)
    else:
        args.output.write_text(text)
        (ROOT / "bench" / "last-results.json").write_text(json.dumps(res, indent=1, default=str))
        say(f"wrote {args.output.relative_to(ROOT)} and bench/last-results.json")
        print(text[text.index("| id |") : text.index("## Peer")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
