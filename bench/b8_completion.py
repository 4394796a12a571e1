"""B8 (issue 16): inline completion (`textDocument/inlineCompletion`) against the fake's partial-mode completions.

    .venv/bin/python bench/run.py --only B8              # B8 alone; the other figures on the page are kept
    .venv/bin/python bench/run.py --only B8 --no-write   # printed only

1. Server overhead per completion: an Invoked request (no debounce; debounceMs 0 as well) at ~50 different cursor
   positions (no cache hits) → the answer at the client, minus the fake's first-token delay for completions.
2. Cache hit: the same requests again (same text, same position): the time, and no request at the fake.
3. Typing session: 20 keystrokes 100 ms apart (didChange + an Automatic request each, debounceMs 120), a pause,
   the ghost text shown, then the user types through it character by character. API requests from the fake's
   log, answers from the cache from `kimi.status`'s `completion` block.

The result is kept in bench/b8-results.json (and in bench/last-results.json after a full run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any, Optional

from common import ROOT, Fake, LeanSession, cpu_seconds, kimi_cmd, loadavg, median, ms, pct, session

RESULTS = ROOT / "bench" / "b8-results.json"
DELAY = 0.05  # the fake's first-token delay for completions (partial mode)
POSITIONS = 50
WARM = 3  # first completions of a session, not counted (HTTP connection, lazy imports)
KEYSTROKES = 20
GAP = 0.1  # seconds between keystrokes
PAUSE = 0.6  # seconds the user waits after the burst (the ghost text is shown in it)
GHOST = "scale * factor + offset"
TYPED = "    value = total + "  # the burst: 20 characters on an empty line
assert len(TYPED) == KEYSTROKES
TARGET_OVERHEAD_MS, TARGET_HIT_MS, TARGET_API, TARGET_FROM_CACHE = 3.0, 1.0, 3, 0.8


def source(lines: int = 200) -> str:
    """A Python file whose lines 10k+1.. end in an open expression (a plausible place for ghost text)."""
    out = []
    for i in range(lines):
        if i % 10 == 0:
            out.append(f"def function_{i}(total, items, factor):")
        elif i % 10 == 9:
            out.append("    return total")
        else:
            out.append(f"    total = total + items[{i % 7}] * {i} + ")
    return "\n".join(out) + "\n"


def typing_source() -> str:
    return (
        f"# fake-completion: {json.dumps(GHOST)}\n"
        "def adjust(total, scale, factor, offset):\n"
        "    total = total * 2\n"
        "\n"
        "    return value\n"
    )


TYPING_LINE = 3  # the empty line the user types on


def set_delay(fake: Fake, seconds: float) -> None:
    """The fake's first-token delay of completions only (common.Fake.configure does not know it)."""
    fake.configure(first_token_delay=0.0, token_delay=0.0, chunk_chars=64)
    if fake._fake is not None:
        fake._fake.configure(completion_delay=seconds)
    else:
        fake._post("/_fake/config", {"completionDelay": seconds})


def completions(fake: Fake) -> list[dict]:
    """Chat requests in partial mode (completions) the fake recorded, in order."""
    out = []
    for r in fake.requests():
        messages = (r.get("body") or {}).get("messages") or [{}]
        if r["path"] == "/v1/chat/completions" and messages[-1].get("partial"):
            out.append(r)
    return out


async def inline(s: Any, uri: str, line: int, character: int, *, invoked: bool, timeout: float = 10) -> list[str]:
    """One textDocument/inlineCompletion; the items' insert texts."""
    if isinstance(s, LeanSession):
        result = await s.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": character},
                "context": {"triggerKind": 1 if invoked else 2},
            },
            timeout,
        )
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        return [i["insertText"] if isinstance(i["insertText"], str) else i["insertText"]["value"] for i in items]
    from lsprotocol import types as lsp

    kind = lsp.InlineCompletionTriggerKind
    params = lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        position=lsp.Position(line=line, character=character),
        context=lsp.InlineCompletionContext(trigger_kind=kind.Invoked if invoked else kind.Automatic),
    )
    result = await asyncio.wait_for(s.client.text_document_inline_completion_async(params), timeout)
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    return [i.insert_text if isinstance(i.insert_text, str) else i.insert_text.value for i in items]


async def status(s: Any) -> dict:
    out = await s.command("kimi.status", {})
    if isinstance(out, dict) and "completion" in out:
        return out["completion"]
    raise RuntimeError(f"kimi.status: {out!r}")


async def fake_floor(fake: Fake, chat: dict, n: int = 10) -> float:
    """The fake's own share: a recorded completion request replayed over one keep-alive socket; request written →
    the end of the reply read, minus the delay (median, ms)."""
    from urllib.parse import urlsplit

    body = json.dumps(chat["body"]).encode()
    url = urlsplit(fake.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer sk-fake-valid-key\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    stream = bool(chat["body"].get("stream"))
    length = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(head + body)
            buf = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError("the fake closed the connection")
                buf += data
                if stream and buf.endswith(b"0\r\n\r\n"):
                    break
                if not stream and b"\r\n\r\n" in buf:
                    head_end = buf.index(b"\r\n\r\n") + 4
                    m = length.search(buf[:head_end])
                    if m and len(buf) - head_end >= int(m.group(1)):
                        break
            out.append(ms(time.perf_counter() - t0) - ms(DELAY))
    finally:
        writer.close()
    return median(out)


# ----------------------------------------------------------------------------------------- 1 and 2


async def bench_latency(
    fake: Fake, client: str, n: int = POSITIONS, cmd: Optional[list[str]] = None, env: Optional[dict] = None
) -> dict[str, Any]:
    fake.reset()
    set_delay(fake, DELAY)
    settings = {"baseUrl": fake.base_url, "completion": {"debounceMs": 0}}
    s = session(client, cmd or kimi_cmd(), settings=settings, env=env)
    await s.start()
    try:
        text = source()
        lines = text.split("\n")
        uri = s.open("complete.py", text)
        await asyncio.sleep(0.3)
        spots = [i for i, line in enumerate(lines) if line.endswith("+ ")]
        assert len(spots) >= n + WARM, len(spots)
        spots = spots[: n + WARM]
        sent, answered, shown = [], [], []
        cpu0 = 0.0
        for i, line in enumerate(spots):
            if i == WARM:
                cpu0 = cpu_seconds(s.pid)
            t0 = time.perf_counter()
            got = await inline(s, uri, line, len(lines[line]), invoked=True)
            t1 = time.perf_counter()
            if i >= WARM:
                sent.append(t0)
                answered.append(t1)
                shown.append(got)
        cpu = ms(cpu_seconds(s.pid) - cpu0) / n
        assert all(shown), f"a completion came back empty: {shown}"
        chats = completions(fake)
        assert len(chats) == n + WARM, f"{len(chats)} completion requests for {n + WARM} positions (cache hits?)"
        arrived = [c["time"] for c in chats[WARM:]]
        over = [ms(b - a) - ms(DELAY) for a, b in zip(sent, answered)]
        pre = [ms(f - a) for a, f in zip(sent, arrived)]
        post = [ms(b - f) - ms(DELAY) for f, b in zip(arrived, answered)]
        floor = await fake_floor(fake, chats[-1])

        # 2. the same requests again: the cache answers, nothing reaches the fake
        before = len(completions(fake))
        hits = []
        for line in spots[WARM:]:
            t0 = time.perf_counter()
            got = await inline(s, uri, line, len(lines[line]), invoked=True)
            hits.append(ms(time.perf_counter() - t0))
            assert got, "a cache hit came back empty"
        after = len(completions(fake))
        st = await status(s)
        return {
            "client": client,
            "n": n,
            "delay_ms": ms(DELAY),
            "stream": bool(chats[-1]["body"].get("stream")),
            "p50_ms": pct(over, 50),
            "p90_ms": pct(over, 90),
            "p99_ms": pct(over, 99),
            "cpu_ms": cpu,
            "pre_ms": median(pre),
            "post_ms": median(post),
            "fake_floor_ms": floor,
            "all_ms": [round(x, 2) for x in over],
            "hit_p50_ms": pct(hits, 50),
            "hit_p90_ms": pct(hits, 90),
            "hit_p99_ms": pct(hits, 99),
            "hit_api_requests": after - before,
            "hit_all_ms": [round(x, 3) for x in hits],
            "status": st,
            "raw": {"sent": sent, "answered": answered, "arrived": arrived},
        }
    finally:
        await s.stop()


# ------------------------------------------------------------------------------------------------ 3


async def bench_typing(fake: Fake, client: str) -> dict[str, Any]:
    fake.reset()
    set_delay(fake, DELAY)
    s = session(client, kimi_cmd(), settings={"baseUrl": fake.base_url})  # the default debounceMs (120)
    await s.start()
    try:
        uri = s.open("typing.py", typing_source())
        await asyncio.sleep(0.3)
        await status(s)  # the settings have been pulled
        zero = await status(s)
        assert zero["api"] == 0 and zero["requests"] == 0, zero
        line, ch = TYPING_LINE, 0
        loop = asyncio.get_running_loop()

        async def keystroke(typed: str, at: float) -> tuple[asyncio.Task, float]:
            nonlocal ch
            await asyncio.sleep(max(0.0, at - loop.time()))
            s.edit(uri, line, ch, line, ch, typed)
            ch += 1
            t0 = time.perf_counter()
            task = asyncio.ensure_future(timed_inline(ch))
            return task, t0

        async def timed_inline(at: int) -> tuple[list[str], float]:
            """The answer and when it arrived (perf_counter)."""
            got = await inline(s, uri, line, at, invoked=False)
            return got, time.perf_counter()

        # the burst
        start = loop.time()
        burst = [await keystroke(c, start + k * GAP) for k, c in enumerate(TYPED)]
        last_key = loop.time()
        timed: list[tuple[list[str], float]] = []
        for task, t0 in burst:
            got, t1 = await task
            timed.append((got, ms(t1 - t0)))
        await asyncio.sleep(max(0.0, last_key + PAUSE - loop.time()))
        after_burst = await status(s)
        api_burst = len(completions(fake))
        shown = timed[-1][0]
        empty_burst = sum(1 for got, _ in timed[:-1] if not got)
        assert shown == [GHOST], f"the ghost text after the pause: {shown!r}"

        # typing through the shown completion
        start = loop.time()
        through_tasks = []
        for k, c in enumerate(GHOST):
            through_tasks.append(await keystroke(c, start + k * GAP))
        through = []
        for k, (task, t0) in enumerate(through_tasks):
            got, t1 = await task
            through.append({"typed": GHOST[: k + 1], "answer": got, "ms": ms(t1 - t0)})
        await asyncio.sleep(0.5)
        end = await status(s)
        chats = completions(fake)
        rest_right = sum(1 for k, t in enumerate(through) if t["answer"] == [GHOST[k + 1 :]] and GHOST[k + 1 :])
        from_cache = end["fromCache"] - after_burst["fromCache"]
        return {
            "client": client,
            "keystrokes_burst": KEYSTROKES,
            "keystrokes_through": len(GHOST),
            "ghost": GHOST,
            "api_requests": len(chats),
            "api_requests_burst": api_burst,
            "cancelled_early": sum(1 for c in chats if c.get("disconnectedEarly")),
            "burst_empty_answers": empty_burst,
            "burst_last_answer_ms": timed[-1][1],
            "from_cache_through": from_cache,
            "from_cache_share": from_cache / len(GHOST),
            "through_answers_right": rest_right,
            "through_hit_p50_ms": pct([t["ms"] for t in through if t["answer"] == [GHOST[len(t["typed"]) :]]], 50),
            "status_after_burst": after_burst,
            "status_end": end,
            "through": through,
        }
    finally:
        await s.stop()


async def bench(fake: Fake, client: str = "pytest-lsp", quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "client": client,
        "quick": quick,
        "load_start": loadavg(),
    }
    try:
        out["latency"] = await bench_latency(fake, client, 20 if quick else POSITIONS)
        if not quick and client != "lean":
            out["latency_lean"] = await bench_latency(fake, "lean")
        out["typing"] = await bench_typing(fake, client)
    finally:
        set_delay(fake, -1.0)  # completions as the rest again
    out["load_end"] = loadavg()
    for part in ("latency", "latency_lean"):
        if part in out:
            out[part].pop("raw", None)
    return out


# ------------------------------------------------------------------------------------------- --trace


CHAIN = [  # consecutive marks on one completion's path: the steps between them add up to the whole
    ("sent", "client → server: the client's encoding, the pipe"),
    ("frame:read", "JSON decode + pygls dispatch"),
    ("frame:dispatched", "→ the handler's task runs"),
    ("complete:in", "complete(): settings, offset, cursor, cache miss → _fetch's task runs"),
    ("fetch:in", "_fetch(): model, messages, chat_body, ls.kimi"),
    ("stream_chat:in", "stream_chat(): redact, the account gate"),
    ("stream_once:in", "httpx: the request built (the body JSON-encoded)"),
    ("httpx_build:out", "httpx/httpcore: the pool, the headers written"),
    ("send_headers:out", "the body written"),
    ("send_body:out", "→ the fake has read the request (loopback, the fake's parsing)"),
    ("arrived", "the fake's delay (not counted)"),
    ("arrived+delay", "the fake's content → the last chunk parsed (fake streaming, httpx-sse, json)"),
    ("chunk:last", "→ [DONE] read, the stream closed (stream false: the JSON read and parsed)"),
    ("stream_once:out", "→ _fetch resumed; clean, usage, cost, cache.put"),
    ("fetch:out", "→ complete() resumed; the item"),
    ("complete:out", "→ the answer serialised and buffered (pygls, cattrs, json)"),
    ("answer:buffered", "→ the writer's flush runs (next loop turn)"),
    ("answer:flush", "→ the client has it: stdout write (a wake-up), the pipe, the client's decoding"),
    ("answered", ""),
]
DETAIL = [  # inside the steps above
    ("config.settled", "settled:in", "settled:out"),
    ("offset_at", "offset_at:in", "offset_at:out"),
    ("_others", "others:in", "others:out"),
    ("cursor_at", "cursor_at:in", "cursor_at:out"),
    ("cache.get", "cache_get:in", "cache_get:out"),
    ("model()", "model:in", "model:out"),
    ("messages()", "messages:in", "messages:out"),
    ("estimate_tokens", "estimate_tokens:in", "estimate_tokens:out"),
    ("chat_body", "chat_body:in", "chat_body:out"),
    ("ls.kimi", "ls_kimi:in", "ls_kimi:out"),
    ("redact_obj", "redact:in", "redact:out"),
    ("httpx build_request", "httpx_build:in", "httpx_build:out"),
    ("fake: read → response headers in", "arrived", "recv_headers:out"),
    ("clean", "clean:in", "clean:out"),
    ("usage + cost", "usage:in", "cost:out"),
    ("cache.put", "cache_put:in", "cache_put:out"),
    ("_item", "item:in", "item:out"),
]


def trace_steps(events: list[tuple[str, float]], raw: dict[str, list[float]], skip: int) -> list[tuple[str, float]]:
    """The median of each step over the counted completions (`skip` warm-up requests first in the trace)."""
    groups: list[dict[str, float]] = []
    for label, t in events:
        if label == "frame:read":
            groups.append({})
        if groups:
            g = groups[-1]
            if label == "chunk:in":
                g.setdefault("chunk:in", t)
                g["chunk:last"] = t
            elif label not in g or label.endswith(":out"):
                g[label] = t
    groups = groups[skip : skip + len(raw["sent"])]
    for g, a, b, f in zip(groups, raw["sent"], raw["answered"], raw["arrived"]):
        g.update({"sent": a, "answered": b, "arrived": f, "arrived+delay": f + DELAY})
    out = []
    for (a, name), (b, _) in itertools.pairwise(CHAIN):
        out.append((name, median([ms(g[b] - g[a]) for g in groups if a in g and b in g])))
    out.append(("", float("nan")))
    for name, a, b in DETAIL:
        out.append(("  (in it) " + name, median([ms(g[b] - g[a]) for g in groups if a in g and b in g])))
    return out


async def trace(client: str, no_stream: bool = False) -> None:
    import os
    import sys
    import tempfile

    from common import server_env

    fake = Fake("process").start()
    try:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            env = {**server_env(), "B8_TRACE": f.name, **({"B8_NO_STREAM": "1"} if no_stream else {})}
            cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "b8_trace_server.py")]
            r = await bench_latency(fake, client, POSITIONS, cmd=cmd, env=env)
            events = json.loads(Path(f.name).read_text())
    finally:
        fake.stop()
    print(
        f"traced server{' (stream: false)' if no_stream else ''}, {client} client: overhead p50 {r['p50_ms']:.2f} "
        f"ms, server CPU {r['cpu_ms']:.2f} ms a completion (the wrappers add their own)"
    )
    steps = trace_steps(events, r["raw"], WARM)
    chain = [v for name, v in steps[: len(CHAIN) - 1] if "not counted" not in name]
    for name, value in steps:
        print(f"  {value:7.3f} ms  {name}" if name else "")
    print(f"  {sum(chain):7.3f} ms  the steps' medians added up (the delay left out)")
    again = _groups(events)[WARM + POSITIONS :]
    hits = [ms(g["answer:flush"] - g["frame:read"]) for g in again if "answer:flush" in g]
    print(f"  cache hits: frame read → the answer's flush, median {median(hits):.3f} ms")


def _groups(events: list[tuple[str, float]]) -> list[dict[str, float]]:
    groups: list[dict[str, float]] = []
    for label, t in events:
        if label == "frame:read":
            groups.append({})
        if groups:
            groups[-1].setdefault(label, t)
    return groups


def save(b8: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps(b8, indent=1) + "\n")


def saved() -> Optional[dict[str, Any]]:
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ report


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def table_rows(b8: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    lat, typing = b8["latency"], b8["typing"]
    lean = b8.get("latency_lean")
    also = f"; lean client p50 {lean['p50_ms']:.2f}, cache hit p50 {lean['hit_p50_ms']:.2f}" if lean is not None else ""
    return [
        (
            "B8",
            f"inline completion, server overhead: `textDocument/inlineCompletion` (Invoked, debounceMs 0) sent → "
            f"answer at the client, minus the fake's {lat['delay_ms']:.0f} ms delay ({lat['n']} cursor positions, "
            "no cache hits)",
            f"p50 ≤ {TARGET_OVERHEAD_MS:.0f} ms",
            f"p50 **{lat['p50_ms']:.2f} ms** (p90 {lat['p90_ms']:.2f}, p99 {lat['p99_ms']:.2f}{also})",
            _verdict(lat["p50_ms"] <= TARGET_OVERHEAD_MS),
        ),
        (
            "B8",
            "inline completion, cache hit: the same requests again (same text, same position)",
            f"p50 ≤ {TARGET_HIT_MS:.0f} ms, no API request",
            f"p50 **{lat['hit_p50_ms']:.2f} ms** (p90 {lat['hit_p90_ms']:.2f}, p99 {lat['hit_p99_ms']:.2f}); "
            f"**{lat['hit_api_requests']}** API requests",
            _verdict(lat["hit_p50_ms"] <= TARGET_HIT_MS and lat["hit_api_requests"] == 0),
        ),
        (
            "B8",
            f"typing session: {typing['keystrokes_burst']} keystrokes 100 ms apart (debounceMs 120), a pause, then "
            f"the shown completion typed through ({typing['keystrokes_through']} keystrokes)",
            f"≤ {TARGET_API} API requests; ≥ {TARGET_FROM_CACHE:.0%} of the typed-through keystrokes from the cache",
            f"**{typing['api_requests']}** API requests; **{typing['from_cache_through']} of "
            f"{typing['keystrokes_through']}** ({typing['from_cache_share']:.0%}) from the cache",
            _verdict(typing["api_requests"] <= TARGET_API and typing["from_cache_share"] >= TARGET_FROM_CACHE - 1e-9),
        ),
    ]


def section(b8: dict[str, Any]) -> list[str]:
    lat, typing = b8["latency"], b8["typing"]
    out = [
        f"## B8: inline completion (run {b8.get('when', '?')}{', --quick' if b8.get('quick') else ''})",
        "",
        f"`bench/b8_completion.py` drives the real `kimi-lsp` process over stdio with VS Code's client capabilities "
        f"({b8['client']} client) against the fake, whose partial-mode completions wait "
        f"{lat['delay_ms']:.0f} ms (`completion_delay`) after reading the request and then answer with the JSON "
        f"string after `fake-completion: ` in the prompt (else a fixed call). The completion is "
        f"{'streamed' if lat['stream'] else 'not streamed'} by the server. Load average at start / end: "
        f"{b8.get('load_start', '?')} / {b8.get('load_end', '?')} (2 cores shared with other engineers).",
        "",
        f"**Overhead and cache hit.** A 200-line file, Invoked requests (no debounce; `debounceMs` 0 as well) at the "
        f"end of {lat['n']} different lines that end in an open expression, one at a time, after {WARM} warm-up "
        "completions; then the same requests again. The fake records, on the same `CLOCK_MONOTONIC` clock, when it "
        "has read each chat request, which splits the overhead into before the HTTP request (editor → server → "
        "fake) and after the fake's pause (fake → server → editor). The fake's own share of the second part is "
        "the recorded completion request replayed to it over a raw socket.",
        "",
        "| client | overhead p50 / p90 / p99 | before the HTTP request (median) | after the fake's pause (median) "
        "| of which the fake alone | server CPU a completion | cache hit p50 / p90 / p99 | API requests for the "
        "cache hits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (lat, b8.get("latency_lean")):
        if r is None:
            continue
        out.append(
            f"| {r['client']} | {r['p50_ms']:.2f} / {r['p90_ms']:.2f} / {r['p99_ms']:.2f} ms | {r['pre_ms']:.2f} ms "
            f"| {r['post_ms']:.2f} ms | {r['fake_floor_ms']:.2f} ms | {r['cpu_ms']:.2f} ms | {r['hit_p50_ms']:.2f} / "
            f"{r['hit_p90_ms']:.2f} / {r['hit_p99_ms']:.2f} ms | {r['hit_api_requests']} |"
        )
    e = typing["status_end"]
    out += [
        "",
        f"**Typing session.** The default `debounceMs` (120). On an empty line of a small file the user types "
        f"`{TYPED}` ({typing['keystrokes_burst']} keystrokes, {GAP * 1000:.0f} ms apart; each a `didChange` and an "
        f"Automatic `inlineCompletion` request, not waiting for the answer), pauses {PAUSE * 1000:.0f} ms, and the "
        f"ghost text `{typing['ghost']}` is shown; then types it through character by character (each keystroke a "
        "`didChange` and a request, 100 ms apart).",
        "",
        "| | |",
        "|---|---|",
        f"| API requests, whole session (the fake's log) | **{typing['api_requests']}** (during the burst and pause: "
        f"{typing['api_requests_burst']}; closed early: {typing['cancelled_early']}) |",
        f"| burst requests answered empty (replaced by the next keystroke before their debounce ended) | "
        f"{typing['burst_empty_answers']} of {typing['keystrokes_burst'] - 1} |",
        f"| the last burst keystroke → ghost text at the client | {typing['burst_last_answer_ms']:.0f} ms "
        f"(debounce 120 + the fake's {lat['delay_ms']:.0f}) |",
        f"| typed-through keystrokes answered from the cache (`kimi.status` `fromCache`) | "
        f"**{typing['from_cache_through']} of {typing['keystrokes_through']}** ({typing['from_cache_share']:.0%}); "
        f"the rest of the ghost text right: {typing['through_answers_right']} |",
        f"| typed-through answer time, cache hits (p50) | {typing['through_hit_p50_ms']:.2f} ms |",
        f"| `kimi.status` `completion` at the end | requests {e['requests']}, shown {e['shown']}, accepted "
        f"{e['accepted']}, fromCache {e['fromCache']}, api {e['api']}, paused {e['paused']} |",
    ]
    misses = [t for t in typing["through"] if t["answer"] != [GHOST[len(t["typed"]) :]]]
    if misses:
        out.append(
            "",
        )
        out.append(
            "Typed-through keystrokes not answered with the rest of the ghost text: "
            + "; ".join(f"`{t['typed']}` → {t['answer']!r} in {t['ms']:.0f} ms" for t in misses)
            + " (the ghost text typed in full leaves nothing to continue: a new completion is asked for)."
        )
    return out


def _print(b8: dict[str, Any]) -> None:
    print("\n".join(section(b8)))
    print()
    for row in table_rows(b8):
        print("| " + " | ".join(row) + " |")


async def _main(client: str, quick: bool) -> dict[str, Any]:
    fake = Fake("process").start()
    try:
        return await bench(fake, client, quick)
    finally:
        fake.stop()


if __name__ == "__main__":
    import argparse
    import logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=["pytest-lsp", "lean"], default="pytest-lsp")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--trace", action="store_true", help="the overhead, step by step (bench/b8_trace_server.py)")
    parser.add_argument("--no-stream", action="store_true", help="with --trace: completions sent with stream false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("pygls", "pytest_lsp"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if args.trace:
        asyncio.run(trace(args.client, args.no_stream))
        raise SystemExit(0)
    result = asyncio.run(_main(args.client, args.quick))
    if args.write:
        save(result)
    _print(result)
