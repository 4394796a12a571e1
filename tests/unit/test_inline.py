"""Inline explain: hover and code lens over explained code, following edits; explain as comment."""

from __future__ import annotations

import asyncio

import pytest

from harness import base, editor, rng
from kimi_lsp.core.comments import as_comment
from kimi_lsp.core.edits import changed_span

CODE = "import os\n\n\ndef double(x):\n    return x * 2\n\n\nprint(double(2))\n"
SEL = rng(3, 0, 5, 0)


async def test_hover_shows_explanation_and_follows_edits(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        h = await ed.hover(uri, 4, 8)
        assert h is not None and r["text"] in h.contents.value and "kimi-k2.5" in h.contents.value
        assert (h.range.start.line, h.range.end.line) == (3, 5)
        assert await ed.hover(uri, 0, 2) is None and await ed.hover(uri, 7, 0) is None
        # an insertion above moves the explanation with the code
        ed.edit(uri, 1, 0, 1, 0, "import sys\nimport re\n")
        await asyncio.sleep(0.1)
        assert await ed.hover(uri, 4, 8) is None
        h = await ed.hover(uri, 6, 8)
        assert h is not None and (h.range.start.line, h.range.end.line) == (5, 7)
        # an edit below does not touch it
        ed.edit(uri, 9, 0, 9, 0, "# end\n")
        assert await ed.hover(uri, 6, 8) is not None
        # an edit inside the explained code makes it stale: gone
        ed.edit(uri, 6, 15, 6, 16, "3")
        await asyncio.sleep(0.1)
        assert await ed.hover(uri, 6, 8) is None and await ed.lenses(uri) == []


async def test_full_document_changes_are_followed_too(fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        ed.change(uri, "# header\n" + CODE)
        await asyncio.sleep(0.1)
        assert await ed.hover(uri, 5, 4) is not None and await ed.hover(uri, 3, 0) is None
        ed.change(uri, ("# header\n" + CODE).replace("x * 2", "x + x"))
        await asyncio.sleep(0.1)
        assert await ed.hover(uri, 5, 4) is None


async def test_code_lens_and_its_commands(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        lenses = await ed.lenses(uri)
        assert [lens.command.title for lens in lenses] == ["Kimi: explained · hover to read", "re-run", "dismiss"]
        assert all(lens.range.start.line == 3 for lens in lenses)
        seen = len(ed.client.shown_documents) + len(ed.client.messages)
        shown = await ed.command(lenses[0].command.command, lenses[0].command.arguments[0])
        assert "fake-kimi" in shown["text"] and shown["title"] == "Kimi: Explain" and shown["done"] is True
        assert len(ed.client.shown_documents) + len(ed.client.messages) == seen + 1  # shown as a document or message
        before = len(fake.chat_requests())
        rerun = await ed.command(lenses[1].command.command, lenses[1].command.arguments[0])
        assert "text" in rerun and len(fake.chat_requests()) == before + 1
        lenses = await ed.lenses(uri)
        assert len(lenses) == 3  # re-running replaces, not duplicates
        await ed.command(lenses[2].command.command, lenses[2].command.arguments[0])
        assert await ed.lenses(uri) == [] and await ed.hover(uri, 4, 8) is None
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert (await ed.command("kimi.clearExplanations"))["cleared"] == 1
        assert await ed.hover(uri, 4, 8) is None


async def test_show_explanation_leaves_the_display_to_a_streaming_client(fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        [lens, *_] = await ed.lenses(uri)
        shown = await ed.command(lens.command.command, lens.command.arguments[0])
        assert "fake-kimi" in shown["text"] and shown["model"] == "kimi-k2.5"
        assert ed.client.shown_documents == [] and ed.client.messages == []


async def test_hover_during_a_slow_stream_shows_partial_text(fake, tmp_path):
    fake.configure(token_delay=0.05, chunk_chars=3)
    async with editor("visual-studio-code", tmp_path, base(fake, thinking="disabled")) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(ed.command("kimi.explain", {"uri": uri, "range": SEL}))
        await ed.wait_for(lambda: fake.chat_requests(), what="stream start")
        await asyncio.sleep(0.5)
        h = await ed.hover(uri, 4, 8)
        assert h is not None and "still writing" in h.contents.value and "**fake-kimi" in h.contents.value
        assert not task.done()
        r = await task
        h = await ed.hover(uri, 4, 8)
        assert r["text"] in h.contents.value and "still writing" not in h.contents.value


async def test_inline_settings_turn_surfaces_off(fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake, inline={"hover": False, "codeLens": False})) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert await ed.hover(uri, 4, 8) is None and await ed.lenses(uri) == []


COMMENT_CASES = [
    ("python", "# "),
    ("javascript", "// "),
    ("typescript", "// "),
    ("lua", "-- "),
    ("go", "// "),
    ("rust", "// "),
    ("c", "// "),
    ("cpp", "// "),
    ("java", "// "),
    ("shellscript", "# "),
    ("ruby", "# "),
    ("html", "<!--"),
    ("css", "/*"),
    ("markdown", "<!--"),
    ("plaintext", ""),
]


@pytest.mark.parametrize("language,marker", COMMENT_CASES)
async def test_explain_as_comment(language, marker, fake, tmp_path):
    code = "top\n    first line\n    second line\nbottom\n"
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("f.txt", code, language=language)
        r = await ed.command("kimi.explainAsComment", {"uri": uri, "range": rng(1, 0, 3, 0), "width": 60})
        assert r["applied"] is True, r
        text = ed.texts[uri]
        assert text.startswith("top\n") and text.endswith("    first line\n    second line\nbottom\n")
        comment = text[len("top\n") : -len("    first line\n    second line\nbottom\n")]
        lines = comment.splitlines()
        assert lines and all(len(line) <= 60 for line in lines)
        assert all(line.startswith("    ") or line == "" for line in lines)
        assert lines[0].strip().startswith(marker.strip() or "**fake-kimi**")
        if marker in ("<!--", "/*"):
            assert lines[-1].strip() in ("-->", "*/")
        assert "fake-kimi" in comment
        # the code itself is byte-identical
        assert text.replace(comment, "") == code


def test_as_comment_wraps_and_indents():
    text = "word " * 50 + "\n\nSecond paragraph."
    out = as_comment(text, "python", "  ", width=40)
    lines = out.splitlines()
    assert all(line.startswith("  # ") or line == "  #" for line in lines) and all(len(x) <= 40 for x in lines)
    assert "  #" in lines  # the blank line between paragraphs stays a comment line


@pytest.mark.parametrize(
    "old,new,span",
    [
        ("abcdef", "abXcdef", (2, 2, 3)),
        ("abcdef", "abef", (2, 4, 2)),
        ("abc", "abc", (3, 3, 3)),
        ("aaa", "aaaa", (3, 3, 4)),
        ("x" * 10000 + "y", "x" * 10000 + "z", (10000, 10001, 10001)),
    ],
)
def test_changed_span(old, new, span):
    assert changed_span(old, new) == span
