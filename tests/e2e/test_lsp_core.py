"""End-to-end: the real kimi-lsp process, driven like VS Code and like Neovim, against the fake over loopback."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types as lsp

from harness import AVERAGE, FAKE_KEY, base, editor, rng
from kimi_lsp.fake import Fault

CODE = AVERAGE


async def test_code_actions_offered_without_network(profile, fake, tmp_path):
    async with editor(
        profile,
        tmp_path,
        base(
            fake,
            actions=[
                {"id": "tests", "title": "Write tests", "prompt": "Tests for {selection}", "output": "insertAfter"}
            ],
        ),
    ) as ed:
        uri = ed.open("a.py", CODE)
        actions = await ed.code_actions(uri, rng(0, 0, 4, 0))
        titles = [a.title for a in actions]
        assert titles == [
            "Kimi: Explain",
            "Kimi: Refactor",
            "Kimi: Fix",
            "Kimi: Add docs",
            "Kimi: Explain as comment",
            "Kimi: Write tests",
        ]
        assert all(isinstance(a.command, lsp.Command) and a.command.command.startswith("kimi.") for a in actions)
        assert fake.requests == []  # no network at all
        only = await ed.code_actions(uri, rng(0, 0, 4, 0), only=[lsp.CodeActionKind.QuickFix])
        assert [a.title for a in only] == []  # Fix is a quickfix only when there are diagnostics
        diag = lsp.Diagnostic(
            range=lsp.Range(start=lsp.Position(line=4, character=0), end=lsp.Position(line=4, character=5)),
            message="division by zero possible",
            source="pyright",
        )
        only = await ed.code_actions(uri, rng(0, 0, 4, 0), only=[lsp.CodeActionKind.QuickFix], diagnostics=[diag])
        assert [(a.title, a.kind) for a in only] == [("Kimi: Fix", lsp.CodeActionKind.QuickFix)]
        assert only[0].command.arguments[0]["diagnostics"][0]["message"] == "division by zero possible"
        # an empty selection, no problems: only the suggestion of a next edit at the cursor
        assert [a.title for a in await ed.code_actions(uri, rng(2, 4, 2, 4))] == ["Kimi: Suggest next edit"]


async def test_refactor_applies_exact_edit(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        result = await ed.command(
            "kimi.refactor", {"uri": uri, "range": rng(0, 0, 5, 0), "instruction": "rename total to acc"}
        )
        assert result["applied"] is True, result
        assert ed.texts[uri] == CODE.replace("total", "acc")
        body = fake.chat_requests()[-1].body
        assert body["model"] == "kimi-k2.5" and body["stream"] is True
        assert "temperature" not in body and "top_p" not in body
        assert fake.chat_requests()[-1].headers["authorization"] == f"Bearer {FAKE_KEY}"


async def test_fix_and_document(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command(
            "kimi.fix",
            {
                "uri": uri,
                "range": rng(4, 0, 5, 0),
                "diagnostics": [{"message": "possible ZeroDivisionError", "line": 4}],
            },
        )
        assert r["applied"], r
        assert "# FIXED: empty list" in ed.texts[uri]
        assert "possible ZeroDivisionError" in fake.chat_requests()[-1].body["messages"][1]["content"]
        r = await ed.command("kimi.document", {"uri": uri, "range": rng(0, 0, 5, 0)})
        assert r["applied"], r
        assert ed.texts[uri].startswith("# Documented by fake-kimi.\ndef average(values):\n")


async def test_explain_returns_and_shows_markdown(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 5, 0)})
        assert r["text"].startswith("**fake-kimi** explains 5 lines of python code")
        assert r["model"] == "kimi-k2.5" and r["usage"]["total_tokens"] > 0
        assert "Thinking about" in r["reasoning"] and "Thinking about" not in r["text"]
        if ed.capabilities.window and ed.capabilities.window.show_document:
            assert ed.client.shown_documents and ed.client.shown_documents[-1].uri.endswith(".md")
        else:
            assert any("fake-kimi" in m for m in ed.messages())


@pytest.mark.parametrize("where,applied", [("above", True), ("below", True), ("inside", False)])
async def test_user_edits_while_kimi_works(where, applied, profile, fake, tmp_path):
    """Typing elsewhere moves the edit with the code; typing inside the selection makes it stale: refused."""
    fake.script(Fault(kind="slow_first", delay=1.0))
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(
            ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 5, 0), "instruction": "rename total to acc"})
        )
        await ed.wait_for(lambda: fake.chat_requests(), what="the request to reach the fake")
        typed = {
            "above": "# user typed\n" + CODE,
            "below": CODE + "# user typed\n",
            "inside": CODE.replace("for v in values", "for value in values"),
        }[where]
        ed.change(uri, typed)
        r = await task
        assert r["applied"] is applied, r
        if applied:
            assert ed.texts[uri] == typed.replace("total", "acc")
            changes = ed.applied[0].edit.document_changes
            assert changes is None or changes[0].text_document.version == 2
        else:
            assert "changed" in r["message"] and ed.texts[uri] == typed and ed.applied == []


async def test_settings_changed_without_a_notification_apply_soon_with_one_pull_per_burst(fake, tmp_path):
    """A request uses the settings pulled for its document and refreshes them in the background, so an editor
    that changes settings without didChangeConfiguration is followed within a request or two; a burst of
    requests needs one refresh, not one each."""
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", "a = 1\nb = 2\n" * 10)
        await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)})
        pulls: list[str] = []
        answer = ed.client.get_configuration
        ed.client.get_configuration = lambda **kw: (pulls.append(kw.get("scope_uri")), answer(**kw))[1]
        ed.configure({**base(fake), "model": "moonshot-v1-8k"}, notify=False)
        await asyncio.gather(
            *(ed.command("kimi.explain", {"uri": uri, "range": rng(i, 0, i + 1, 0)}) for i in range(10))
        )
        await ed.wait_for(lambda: pulls, 5, what="the background refresh")
        await asyncio.sleep(0.3)
        assert 1 <= len(pulls) <= 3 and set(pulls) == {uri}
        fake.reset()
        await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)})
        assert [r.model for r in fake.chat_requests()] == ["moonshot-v1-8k"]
