"""Vision and tool use end to end: images from the workspace, and the model reading the code it needs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import zlib

import pytest

from harness import base, editor, rng


def tiny_png(w: int = 2, h: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()
LABEL = f"img1=image/png,{len(PNG)}B,sha={hashlib.sha256(PNG).hexdigest()[:8]}"


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "img").mkdir(parents=True)
    (root / "img" / "shot.png").write_bytes(PNG)
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("def helper():\n    return 42\n")
    (root / ".env").write_text("API_KEY=do-not-send\n")
    (root / "build").mkdir()
    (root / "build" / "gen.py").write_text("generated_secret = 1\n")
    (root / ".gitignore").write_text("build/\n")
    (tmp_path / "outside.py").write_text("outside_secret = 1\n")
    os.symlink(tmp_path / "outside.py", root / "link.py")
    return root


def image_parts(body):
    return [
        p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"
    ]


async def test_write_alt_text_into_markdown(profile, fake, ws):
    doc = "# Title\n\n![](img/shot.png)\n\nText.\n"
    async with editor(profile, ws, base(fake)) as ed:
        uri = ed.open("README.md", doc, language="markdown")
        actions = await ed.code_actions(uri, rng(2, 3, 2, 3))  # just the cursor on the image line
        titles = [a.title for a in actions]
        assert {"Kimi: Describe image", "Kimi: Write alt text", "Kimi: Implement this mockup"} <= set(titles)
        assert fake.requests == []
        alt = next(a for a in actions if a.title == "Kimi: Write alt text")
        r = await ed.command(alt.command.command, alt.command.arguments[0])
        assert r["applied"] is True, r
        assert ed.texts[uri] == doc.replace("![]", f"![Fake alt text for image/png ({len(PNG)} bytes)]")
        [part] = image_parts(fake.chat_requests()[-1].body)
        assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_alt_text_in_html_and_describe(fake, ws):
    doc = '<p>\n  <img src="img/shot.png" alt="old">\n</p>\n'
    async with editor("visual-studio-code", ws, base(fake)) as ed:
        uri = ed.open("index.html", doc, language="html")
        r = await ed.command("kimi.writeAltText", {"uri": uri, "range": rng(1, 0, 2, 0)})
        assert r["applied"] and ed.texts[uri] == doc.replace(
            'alt="old"', f'alt="Fake alt text for image/png ({len(PNG)} bytes)"'
        )
        r = await ed.command("kimi.describeImage", {"uri": uri, "range": rng(1, 0, 1, 0)})
        assert LABEL in r["text"]


async def test_implement_mockup_inserts_code_after_selection(fake, ws):
    doc = "<body>\n  <main></main>\n</body>\n"
    (ws / "mock.png").write_bytes(PNG)
    async with editor("neovim", ws, base(fake)) as ed:
        uri = ed.open("page.html", doc.replace("<main></main>", '<main data-mock="mock.png"></main>'), language="html")
        before = ed.texts[uri]
        r = await ed.command("kimi.implementMockup", {"uri": uri, "range": rng(1, 0, 2, 0)})
        assert r["applied"], r
        lines = ed.texts[uri].splitlines()
        assert lines[:2] == before.splitlines()[:2] and lines[-1] == "</body>"
        assert f"<!-- mockup for {LABEL} -->" in lines[2] and '<div class="mockup"></div>' in lines[3]


async def test_ask_with_images(fake, ws):
    odd = ws / "shots #1?"  # a given path is taken as it is: no query or fragment is cut off
    odd.mkdir()
    (odd / "a.png").write_bytes(PNG)
    async with editor("neovim", ws, base(fake)) as ed:
        r = await ed.command("kimi.ask", {"prompt": "What is in this picture?", "images": ["img/shot.png"]})
        assert LABEL in r["text"]
        r = await ed.command("kimi.ask", {"prompt": "And this?", "images": [str(odd / "a.png")]})
        assert LABEL in r["text"], r


@pytest.mark.parametrize(
    "settings,path,words",
    [
        ({"maxImageBytes": 10}, "img/shot.png", "kimi.maxImageBytes"),
        ({"model": "moonshot-v1-8k"}, "img/shot.png", "cannot see images"),
        ({}, "../outside.png", "'..'"),
        ({}, "missing.png", "No such file"),
        ({}, "notes.txt", "not a PNG"),
    ],
)
async def test_image_refusals_send_nothing(settings, path, words, fake, ws, tmp_path):
    (tmp_path / "outside.png").write_bytes(PNG)
    async with editor("neovim", ws, base(fake, **settings)) as ed:
        r = await ed.command("kimi.ask", {"prompt": "look", "images": [path]})
        assert r["error"]["code"] == "refused" and words in r["error"]["message"], r
        if "cannot see" in words:
            assert "kimi-k2.5" in r["error"]["message"]
        assert any(words in m for m in ed.messages())
        assert fake.requests == []


async def test_tool_loop_reads_another_file(profile, fake, ws):
    async with editor(profile, ws, base(fake, model="kimi-k2.7-code"), init_options={"stream": True}) as ed:
        uri = ed.open("main.py", "from lib.util import helper\n")
        r = await ed.command(
            "kimi.ask",
            {"prompt": "Please read lib/util.py and say what helper returns", "uri": uri, "range": rng(0, 0, 1, 0)},
        )
        assert r["text"] == "**fake-kimi** read lib/util.py: 1: def helper():"
        first, second = fake.chat_requests()
        assert [t["function"]["name"] for t in first.body["tools"]] == [
            "read_file",
            "list_files",
            "search_text",
            "get_diagnostics",
            "get_document_symbols",
        ]
        assert first.body["tool_choice"] == "auto"
        assistant, tool = second.body["messages"][-2:]
        assert assistant["tool_calls"][0]["id"] == tool["tool_call_id"] == "read_file:0"
        assert assistant["reasoning_content"] == "I should read lib/util.py."  # replayed for the thinking model
        assert tool["content"].startswith("lib/util.py (lines 1-2 of 2)\n1: def helper():")
        assert any(s["kind"] == "status" and s["text"] == "reading lib/util.py:1-200" for s in ed.stream)


async def test_open_buffers_win_over_disk(fake, ws):
    async with editor("visual-studio-code", ws, base(fake)) as ed:
        ed.open("lib/util.py", "def helper_unsaved():\n    return 43\n")
        r = await ed.command("kimi.ask", {"prompt": "read lib/util.py"})
        assert r["text"] == "**fake-kimi** read lib/util.py: 1: def helper_unsaved():"


@pytest.mark.parametrize(
    "path,words",
    [
        ("../outside.py", "'..'"),
        ("link.py", "outside the workspace"),
        (".env", "secret"),
        ("build/gen.py", ".gitignore"),
        ("/etc/hostname", "outside the workspace"),
    ],
)
async def test_tool_reads_refused(path, words, fake, ws):
    async with editor("neovim", ws, base(fake)) as ed:
        r = await ed.command("kimi.ask", {"prompt": f"read {path}"})
        assert r["text"].startswith(f"**fake-kimi** could not read {path}: error:") and words in r["text"], r
        tool = fake.chat_requests()[-1].body["messages"][-1]
        assert tool["role"] == "tool" and tool["content"].startswith("error:")
        sent = repr([q.body for q in fake.chat_requests()])
        assert "do-not-send" not in sent and "generated_secret" not in sent and "outside_secret" not in sent


async def test_tool_deny_setting(fake, ws):
    async with editor("neovim", ws, base(fake, toolDeny=["lib/*"])) as ed:
        r = await ed.command("kimi.ask", {"prompt": "read lib/util.py"})
        assert "kimi.toolDeny" in r["text"]


async def test_round_limit(fake, ws):
    async with editor("neovim", ws, base(fake, maxToolRounds=2)) as ed:
        r = await ed.command("kimi.ask", {"prompt": "KEEP_CALLING_TOOLS read lib/util.py"})
        reqs = fake.chat_requests()
        assert len(reqs) == 3 and [q.body["tool_choice"] for q in reqs] == ["auto", "auto", "none"]
        assert "text" in r and r["text"].count("**fake-kimi** read lib/util.py") == 2


async def test_tools_off_and_models_without_tools(fake, ws):
    async with editor("neovim", ws, base(fake, tools="off")) as ed:
        await ed.command("kimi.ask", {"prompt": "read lib/util.py"})
        assert "tools" not in fake.chat_requests()[-1].body
        ed.configure(base(fake, model="moonshot-v1-8k-vision-preview"))
        await asyncio.sleep(0.2)
        await ed.command("kimi.ask", {"prompt": "read lib/util.py"})
        assert "tools" not in fake.chat_requests()[-1].body


async def test_web_search(fake, ws):
    async with editor("neovim", ws, base(fake, webSearch=True, thinking="disabled")) as ed:
        r = await ed.command("kimi.ask", {"prompt": "web search for kimi news"})
        assert r["text"] == "**fake-kimi** searched the web for: web search for kimi news"
        u = r["usage"]  # the search is billed per call, on top of the tokens (kimi-k2.5: $0.004)
        tokens = (
            (u["prompt_tokens"] - u["cached_tokens"]) * 0.60 + u["cached_tokens"] * 0.10 + u["completion_tokens"] * 3.00
        ) / 1e6
        assert r["cost"]["amount"] == pytest.approx(tokens + 0.004)
        assert {"type": "builtin_function", "function": {"name": "$web_search"}} in fake.chat_requests()[0].body[
            "tools"
        ]
        assert sum("bills each $web_search" in m for m in ed.messages()) == 1
        await ed.command("kimi.ask", {"prompt": "web search again"})
        assert sum("bills each $web_search" in m for m in ed.messages()) == 1  # cost shown once
        ed.configure(base(fake, webSearch=True, thinking="enabled"))
        await asyncio.sleep(0.2)
        fake.reset()
        await ed.command("kimi.ask", {"prompt": "web search while thinking"})
        names = [t["function"]["name"] for t in fake.chat_requests()[0].body["tools"]]
        assert "$web_search" not in names and any("not allow both" in m for m in ed.messages())
