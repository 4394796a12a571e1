"""A bounded soak: 2,000 requests with random faults over loopback against ONE server process.

A mix of cheap code actions and commands (every request kind, listModels, status, cancel) with faults scripted
on the fake (errors, retries, cut and malformed streams, wrong content types, slow first tokens, cancellations),
several in flight at once. Before and after: the server's resident memory, open file descriptors and running
jobs (kimi.status `running`). They must come back near where they started.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from fault_helpers import alive, open_fds, rss_kb, safe_editor, threads
from harness import FAKE_KEY, rng
from kimi_lsp.fake import Fault

pytestmark = pytest.mark.slow

TOTAL = 2000
WARMUP = 150
CONCURRENCY = 6
RSS_GROWTH_KB = 15 * 1024
FD_GROWTH = 10

CODE = "".join(f"value_{i} = compute({i})  # BUG\n" for i in range(40))
ACTIONS = [
    {"id": "shout", "title": "Shout", "prompt": "Instruction: uppercase\n{selection}", "output": "replace"},
    {"id": "note", "title": "Note", "prompt": "Summarise {selection}", "output": "show"},
    {
        "id": "after",
        "title": "After",
        "prompt": "Instruction: rename compute to calc\n{selection}",
        "output": "insertAfter",
    },
]

# fast faults (no drip, no huge, no long waits): weights
FAULTS = [
    (None, 30),
    (lambda r: [Fault("unauthorized")], 3),
    (lambda r: [Fault("model_not_found")], 3),
    (lambda r: [Fault("context_too_long")], 2),
    (lambda r: [Fault("content_filter")], 2),
    (lambda r: [Fault("permission_denied")], 1),
    (lambda r: [Fault("quota")], 2),
    (lambda r: [Fault("rate_limit", wait=0)] * r.randint(1, 3), 3),
    (lambda r: [Fault("rate_limit", wait=None)], 2),
    (lambda r: [Fault("overloaded")] * r.randint(1, 3), 3),
    (lambda r: [Fault("server_error")], 3),
    (lambda r: [Fault("no_error_body")], 2),
    (lambda r: [Fault("cut", after_chunks=r.randint(0, 15))], 5),
    (lambda r: [Fault("not_json", after_chunks=r.randint(0, 15))], 3),
    (lambda r: [Fault("wrong_content_type")], 2),
    (lambda r: [Fault("slow_first", delay=r.uniform(0.05, 0.3))], 3),
    (lambda r: [Fault("length")], 2),
    (lambda r: [Fault("think_tags")], 2),
]


def _command(r: random.Random, uris: list[str]) -> tuple[str, dict]:
    uri = r.choice(uris)
    a = r.randint(0, 30)
    sel = {"uri": uri, "range": rng(a, 0, a + r.randint(1, 8), 0)}
    name = r.choices(
        [
            "kimi.explain",
            "kimi.refactor",
            "kimi.fix",
            "kimi.document",
            "kimi.ask",
            "kimi.runAction",
            "kimi.listModels",
            "kimi.status",
            "kimi.cancel",
        ],
        weights=[5, 5, 3, 3, 3, 4, 1, 1, 1],
    )[0]
    if name == "kimi.ask":
        return name, {"prompt": f"question {r.random()}", **(sel if r.random() < 0.5 else {})}
    if name == "kimi.runAction":
        return name, {**sel, "id": r.choice(ACTIONS)["id"]}
    if name == "kimi.refactor":
        return name, {**sel, "instruction": r.choice(["rename compute to calc", "uppercase", ""])}
    if name in ("kimi.listModels", "kimi.status"):
        return name, {}
    if name == "kimi.cancel":
        return name, {}  # cancels whatever runs in the same batch: cancellation paths get soaked too
    return name, sel


def _check_command(name: str, res: dict) -> None:
    assert isinstance(res, dict), res
    if name == "kimi.cancel":
        assert isinstance(res["cancelled"], int)
    elif name == "kimi.status":
        assert res["keyPresent"] is True
    elif name == "kimi.listModels":
        assert res["models"]
    elif res.get("cancelled"):
        assert res["applied"] is False
    elif "error" in res:
        assert res["error"]["code"] and res["error"]["message"], res
        assert res["applied"] is False
    else:
        assert "text" in res or "applied" in res, res


async def _probe(ed) -> dict:
    pid = ed.client._server.pid
    status = await ed.command("kimi.status")
    return {"rss_kb": rss_kb(pid), "fds": open_fds(pid), "threads": threads(pid), "running": status["running"]}


async def _settle(ed) -> dict:
    """Wait until no job runs, then probe."""
    deadline = time.monotonic() + 15
    while True:
        p = await _probe(ed)
        if p["running"] == 0 or time.monotonic() > deadline:
            return p
        await asyncio.sleep(0.1)


async def test_soak_2000_requests_with_random_faults(fake, tmp_path):
    r = random.Random(20260601)
    settings = {
        "baseUrl": fake.base_url,
        "previewEdits": "never",
        "commandResult": "final",
        "actions": ACTIONS,
        "requestTimeout": 20,
    }
    async with safe_editor("visual-studio-code", tmp_path, settings, init_options={"stream": True}) as ed:
        uris = [ed.open(f"soak{i}.py", CODE) for i in range(4)]
        for uri in uris:  # settings pulled for every document (kimi.runAction does not wait for them: see faults)
            await ed.code_actions(uri, rng(0, 0, 1, 0))
        counts = {"codeAction": 0, "command": 0, "error": 0, "cancelled": 0, "ok": 0}
        faults_made = [f for f, _ in FAULTS]
        weights = [w for _, w in FAULTS]

        async def one() -> None:
            if r.random() < 0.6:
                uri = r.choice(uris)
                a = r.randint(0, 45)
                acts = await ed.code_actions(uri, rng(a, 0, a + r.randint(0, 5), r.randint(0, 9)))
                assert isinstance(acts, (list, tuple))
                counts["codeAction"] += 1
                return
            name, args = _command(r, uris)
            make = r.choices(faults_made, weights)[0]
            if make is not None and name not in ("kimi.listModels", "kimi.status", "kimi.cancel"):
                fake.script(*make(r))
            res = await ed.command(name, args, timeout=60)
            _check_command(name, res)
            counts["command"] += 1
            counts["cancelled" if res.get("cancelled") else "error" if "error" in res else "ok"] += 1

        async def run(n: int) -> None:
            done = 0
            while done < n:
                batch = min(CONCURRENCY, n - done)
                await asyncio.gather(*(one() for _ in range(batch)))
                done += batch
                if done % 100 < CONCURRENCY:
                    for uri in uris:  # keep the documents from growing without bound
                        if ed.texts[uri] != CODE:
                            ed.change(uri, CODE)
                    ed.client.messages.clear()
                    ed.client.progress_reports.clear()
                    ed.stream.clear()
                    ed.applied.clear()

        await run(WARMUP)  # imports, pools, caches: not a leak
        start = await _settle(ed)
        began = time.monotonic()
        await run(TOTAL)
        elapsed = time.monotonic() - began
        end = await _settle(ed)
        # every request was answered, and the server is still in shape for normal work
        assert alive(ed)
        fake.reset()
        for uri in uris:
            ed.change(uri, CODE)
        res = await ed.command(
            "kimi.refactor", {"uri": uris[0], "range": rng(0, 0, 3, 0), "instruction": "rename compute to calc"}
        )
        assert res["applied"] is True, res
        report = (
            f"{TOTAL} requests in {elapsed:.1f}s {counts}; start {start}; end {end}; "
            f"rss growth {(end['rss_kb'] - start['rss_kb']) / 1024:.1f} MB"
        )
        print(report)
        assert counts["codeAction"] + counts["command"] == TOTAL + WARMUP, report
        assert counts["error"] > 50 and counts["ok"] > 50, report
        assert end["running"] == 0, report
        assert end["rss_kb"] - start["rss_kb"] < RSS_GROWTH_KB, report
        assert end["fds"] - start["fds"] < FD_GROWTH, report
        assert end["threads"] - start["threads"] < 5, report
        assert not any(FAKE_KEY in m.message for m in ed.client.messages)
