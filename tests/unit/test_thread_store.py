"""core.threads and core.references: replay rules, trimming, the store on disk, export, and #references."""

from __future__ import annotations

import json

import pytest

from kimi_lsp.core.references import as_prompt, resolve
from kimi_lsp.core.threads import (
    ThreadStore,
    Turn,
    code_blocks,
    fit_history,
    markdown,
    new_thread,
    replay,
    without_images,
)
from kimi_lsp.core.tools import Sandbox

HISTORY = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "first"},
    {"role": "assistant", "content": "a0", "reasoning_content": "r0"},
    {"role": "user", "content": "q1 " * 400},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "q2"},
]


@pytest.mark.parametrize("thinking", [True, False])
def test_replay(thinking):
    out = replay(HISTORY, thinking)
    answers = [m for m in out if m["role"] == "assistant"]
    if thinking:
        assert [m["reasoning_content"] for m in answers] == ["r0", ""]  # "" where an earlier model gave none
    else:
        assert all("reasoning_content" not in m for m in answers)
    assert HISTORY[4] == {"role": "assistant", "content": "a1"}  # the stored history is not changed


@pytest.mark.parametrize("budget,dropped", [(10_000, 0), (100, 1), (1, 1)])
def test_fit_history_drops_the_oldest_follow_ups(budget, dropped):
    out, n = fit_history(HISTORY, budget)
    assert n == dropped and out[:3] == HISTORY[:3] and out[-1] == HISTORY[-1]
    assert [m["role"] for m in out] == ["system", "user", "assistant"] + ["user", "assistant"] * (1 - n) + ["user"]


def test_without_images():
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:..."}}]
    assert without_images([{"role": "user", "content": parts}]) == [
        {"role": "user", "content": "look\n[1 image(s) were attached]"}
    ]


def test_store_round_trip_prune_and_no_key(tmp_path):
    from kimi_lsp import redact

    redact.register("sk-live-secret-key-123456")
    store = ThreadStore("file:///ws", root=tmp_path, limit=2)
    threads = []
    for n in range(3):
        t = new_thread(f"question {n} sk-live-secret-key-123456", "kimi-k2.5", "ask")
        t.turns.append(Turn(question=f"q{n}", answer="a"))
        t.updated += n
        store.save(t)
        threads.append(t)
    kept = store.all()
    assert len(kept) == 2 and store.load(threads[0].id) is None  # pruned beyond the limit
    raw = "".join(p.read_text() for p in store.folder.glob("*.json"))
    assert "sk-live-secret-key-123456" not in raw and "[redacted]" in raw
    assert all(json.loads(p.read_text())["workspace"] == "file:///ws" for p in store.folder.glob("*.json"))
    assert store.load("../../etc/passwd") is None and not store.delete("../x")
    assert store.delete(kept[0].id) and len(store.all()) == 1
    assert (store.folder.stat().st_mode & 0o777) == 0o700


def test_markdown_and_code_blocks():
    t = new_thread("Why?", "kimi-k2.6", "ask", uri="file:///a.py")
    t.turns += [Turn("Why?", "Because.\n```py\nx = 1\n```\n", references=["a.py:1-2"]), Turn("And?", "```\ny\n```")]
    doc = markdown(t)
    assert doc.startswith("# Why?\n") and "## 2. And?" in doc and "References: a.py:1-2" in doc
    assert code_blocks(t.turns[0].answer) == ["x = 1\n"] and code_blocks("no code") == []


async def test_references(tmp_path):
    (tmp_path / "lib.py").write_text("def helper():\n    return 1\n")
    (tmp_path / ".env").write_text("KEY=1\n")
    sandbox = Sandbox([tmp_path])
    refs = await resolve(
        "see #file:lib.py and #file:.env, #diagnostics, #selection, #symbol:helper, #file:lib.py again, "
        "#symbol:missing, #file:../outside.py",
        sandbox,
        selection="x = 1",
        diagnostics=["line 1: bad"],
    )
    assert [(r.label, r.ok) for r in refs] == [
        ("lib.py:1-2", True),
        (".env", False),
        ("#diagnostics", True),
        ("#selection", True),
        ("helper (lib.py:1)", True),
        ("symbol missing", False),
        ("../outside.py", False),
    ]
    text = as_prompt(refs)
    assert "KEY=1" not in text and "- line 1: bad" in text and "x = 1" in text
    big = await resolve("#file:lib.py", sandbox, budget=1)
    assert not big[0].ok and "too large" in big[0].text


@pytest.mark.parametrize(
    "info,target",
    [
        ("python lib/util.py:10-20", ("lib/util.py", 10, 20)),
        ('python title="a.py:3-4"', ("a.py", 3, 4)),
        ("python", None),
        ("python a.py:9-2", None),  # backwards
        ("python a.py", None),
    ],
)
def test_block_target(info, target):
    from kimi_lsp.core.threads import block_target

    assert block_target(f"x\n```{info}\ncode\n```\n", 0) == target
    assert block_target("no blocks", 0) is None
