"""Unit tests for image references and the tools' sandbox (real files in a temporary workspace)."""

from __future__ import annotations

import asyncio
import os

import pytest

from kimi_lsp.core.images import alt_text_edit, find_image_refs
from kimi_lsp.core.tools import Sandbox, ToolBox, ToolError
from kimi_lsp.kimi.sse import ToolCall

REF_CASES = [
    ("![old alt](img/a.png)", "markdown", "img/a.png", "old alt"),
    ('![](<docs/b c.jpg> "title")', None, None, None),  # spaces in an angle-bracket path: not supported, no crash
    ("![x](https://example.com/a.png)", None, None, None),  # not a workspace file
    ('<img src="shot.webp" alt="A">', "html", "shot.webp", "A"),
    ("<IMG class='x' SRC='s.gif'>", "html", "s.gif", ""),
    ("background: url('bg.jpeg');", "css", "bg.jpeg", None),
    ("background: url(bg.png)", "css", "bg.png", None),
    ('logo = load("assets/logo.PNG")', "quoted", "assets/logo.PNG", None),
    ("data = 'notes.txt'", None, None, None),
    ("url(data:image/png;base64,AAAA)", None, None, None),
]


@pytest.mark.parametrize("text,kind,path,alt", REF_CASES)
def test_find_image_refs(text, kind, path, alt):
    refs = find_image_refs(text)
    if kind is None:
        assert refs == []
        return
    [ref] = refs
    assert (ref.kind, ref.path) == (kind, path)
    if alt is not None and ref.alt_start is not None:
        assert text[ref.alt_start : ref.alt_end] == alt


@pytest.mark.parametrize(
    "text,alt,expected",
    [
        ("![old](a.png)", "A red [button]", "![A red \\[button\\]](a.png)"),
        ('<img src="a.png" alt="old">', 'Say "hi"', '<img src="a.png" alt="Say &quot;hi&quot;">'),
        ('<img src="a.png">', "Chart", '<img alt="Chart" src="a.png">'),
        ("![](a.png)", 'Alt text: "A cat"\n', "![A cat](a.png)"),
    ],
)
def test_alt_text_edit(text, alt, expected):
    [ref] = find_image_refs(text)
    s, e, new = alt_text_edit(ref, alt)
    assert text[:s] + new + text[e:] == expected


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "util.py").write_text("def helper():\n    return 42\n")
    (root / "src" / "main.py").write_text("from util import helper\nprint(helper())\n")
    (root / ".env").write_text("API_KEY=secret\n")
    (root / "id_rsa").write_text("-----BEGIN-----\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("generated = True\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "debug.log").write_text("log\n")
    (root / "private").mkdir()
    (root / "private" / "notes.md").write_text("private\n")
    (root / "big.txt").write_text("x" * 200_000)
    (tmp_path / "outside.txt").write_text("outside\n")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    return root


@pytest.mark.parametrize(
    "path,words",
    [
        ("../outside.txt", "'..'"),
        ("src/../../outside.txt", "'..'"),
        ("/etc/passwd", "outside the workspace"),
        ("link.txt", "outside the workspace"),
        (".env", "secret"),
        ("id_rsa", "secret"),
        ("build/out.py", ".gitignore"),
        ("debug.log", ".gitignore"),
        ("private/notes.md", "kimi.toolDeny"),
        (".git/config", "version-control"),
        ("", "required"),
    ],
)
def test_sandbox_refuses(ws, path, words):
    box = Sandbox([ws], deny=("private/*",))
    with pytest.raises(ToolError, match=None) as info:
        box.resolve(path)
    assert words in str(info.value) and str(info.value).startswith("error:")


def run(box: ToolBox, name: str, **args) -> str:
    import json

    return asyncio.run(box.run(ToolCall(id=f"{name}:0", name=name, arguments=json.dumps(args))))


def test_tools_read_list_search(ws):
    docs = {str(ws / "src" / "util.py"): "def helper():\n    return 43  # unsaved\n"}
    box = ToolBox(Sandbox([ws], docs, deny=("private/*",)), diagnostics={str(ws / "src" / "main.py"): ["line 1: x"]})
    assert "return 43  # unsaved" in run(box, "read_file", path="src/util.py")  # the buffer, not the disk
    assert (
        run(box, "read_file", path="src/main.py", startLine=2, endLine=2)
        == "src/main.py (lines 2-2 of 2)\n2: print(helper())"
    )
    listed = run(box, "list_files", glob="**/*.py").splitlines()
    assert listed == ["src/main.py", "src/util.py"]  # build/ is gitignored
    assert ".env" not in run(box, "list_files") and "debug.log" not in run(box, "list_files")
    assert (
        run(box, "search_text", pattern="helper", glob="**/*.py").splitlines()[0]
        == "src/main.py:1: from util import helper"
    )
    assert run(box, "search_text", pattern="API_KEY") == "no matches"
    assert run(box, "get_diagnostics", path="src/main.py") == "line 1: x"
    assert run(box, "get_document_symbols", path="src/util.py") == "1: def helper():"
    assert run(box, "read_file", path=".env").startswith("error:")
    assert run(box, "nope").startswith("error: unknown tool")
    assert run(box, "read_file", path="missing.py").startswith("error:")


def test_read_is_capped(ws):
    box = Sandbox([ws], read_limit=1000)
    text = box.read_text(box.resolve("big.txt"))
    assert len(text) < 1100 and "truncated at 1000 bytes" in text


def test_web_search_echoes_arguments(ws):
    box = ToolBox(Sandbox([ws]), web_search=True)
    assert box.specs()[-1] == {"type": "builtin_function", "function": {"name": "$web_search"}}
    call = ToolCall(id="$web_search:0", type="builtin_function", name="$web_search", arguments='{"query": "x"}')
    assert asyncio.run(box.run(call)) == '{"query": "x"}'
    assert box.describe(call) == "searching the web for 'x'"
