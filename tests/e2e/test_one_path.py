"""One path (#13): every built-in action and a custom one, run from the terminal (`kimi-lsp run`) and from the
editor (the language server), give the same resulting text: the same request preparation (core.request) and the
same placement rule per output kind (core.outputs)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from harness import base, editor, rng, server_env


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


CODE = "import os\n\n\ndef total(xs):\n    t = 0\n    for x in xs:\n        t += x  # BUG: ignores None\n    return t\n"
PAGE = "# Shots\n\n![](shot.png)\n\nText.\n"
CUSTOM = {"id": "shout", "title": "Shout", "prompt": "Rewrite this code in upper case:\n{code}", "output": "replace"}

# (action, file, text, language, first line, last line, instruction)
ROWS = [
    ("explain", "calc.py", CODE, "python", 4, 8, ""),
    ("explain-comment", "calc.py", CODE, "python", 4, 8, ""),
    ("refactor", "calc.py", CODE, "python", 4, 8, "rename t to acc"),
    ("fix", "calc.py", CODE, "python", 4, 8, ""),
    ("document", "calc.py", CODE, "python", 4, 8, ""),
    ("ask", "calc.py", CODE, "python", 4, 8, "What does this return for []?"),
    ("describe-image", "page.md", PAGE, "markdown", 3, 3, ""),
    ("alt-text", "page.md", PAGE, "markdown", 3, 3, ""),
    ("mockup", "page.md", PAGE, "markdown", 3, 3, ""),
    ("shout", "calc.py", CODE, "python", 4, 8, ""),
]


def cli(ws: Path, fake, action: str, target: str, instruction: str) -> subprocess.CompletedProcess:
    (ws / "settings.json").write_text(json.dumps({"kimi": {"actions": [CUSTOM]}}))
    args = ["run", action, target, "--apply", "--base-url", fake.base_url, "--settings", "settings.json"]
    if instruction:
        args += ["--instruction", instruction]
    return subprocess.run(
        [sys.executable, "-m", "kimi_lsp", *args], cwd=ws, env=server_env(), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("action", "name", "text", "language", "first", "last", "instruction"), ROWS, ids=[r[0] for r in ROWS]
)
async def test_cli_and_editor_give_the_same_text(
    tmp_path, fake, action, name, text, language, first, last, instruction
):
    from kimi_lsp.core.actions import BUILTIN_ACTIONS

    terminal, workspace = tmp_path / "terminal", tmp_path / "editor"
    for ws in (terminal, workspace):
        ws.mkdir()
        (ws / "shot.png").write_bytes(tiny_png())
        (ws / name).write_text(text)

    r = cli(terminal, fake, action, f"{name}:{first}-{last}", instruction)
    assert r.returncode == 0, r.stderr
    spec = BUILTIN_ACTIONS.get(action)
    shows = spec is not None and spec.output == "show"

    init = {"stream": True}  # a client that renders kimi/stream, as our plugins do
    async with editor("visual-studio-code", workspace, base(fake, actions=[CUSTOM]), init_options=init) as ed:
        uri = ed.open(name, text, language=language)
        args: dict = {"uri": uri, "range": rng(first - 1, 0, last, 0)}
        if action == "ask":
            args["prompt"] = instruction
        elif instruction:
            args["instruction"] = instruction
        if spec is None:
            command, args["id"] = "kimi.runAction", action
        else:
            command = spec.command
        result = await ed.command(command, args, timeout=40)
        assert "error" not in result, result
        # The result names the action and its output kind (actions as data).
        output = spec.output if spec else CUSTOM["output"]
        assert result["action"] == action and result["output"] == output
        assert [(e["action"], e["output"]) for e in ed.stream if e.get("kind") == "start"] == [(action, output)]
        if shows:
            assert r.stdout.strip("\n") == result["text"]
            assert (terminal / name).read_text() == text == ed.texts[uri]  # an answer changes nothing
        else:
            assert result["applied"] is True, result
            assert (terminal / name).read_text() == ed.texts[uri] != text


async def test_explain_comment_writes_a_comment_above_the_code(tmp_path, fake):
    (tmp_path / "calc.py").write_text(CODE)
    r = cli(tmp_path, fake, "explain-comment", "calc.py:4-8", "")
    assert r.returncode == 0, r.stderr
    new = (tmp_path / "calc.py").read_text()
    above, code = CODE[: CODE.index("def total")], CODE[CODE.index("def total") :]
    assert new.startswith(above) and new.endswith(code)  # the code itself untouched
    inserted = new[len(above) : len(new) - len(code)]
    lines = inserted.splitlines()
    assert lines and all(line == "#" or line.startswith("# ") for line in lines), inserted  # a comment, above it


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("calc.py:40-90", "the file has 8 lines"),
        ("calc.py:0-2", "1-based"),
        ("calc.py:5-3", "1-based"),
        ("gone.py:1-2", "cannot read"),
    ],
)
def test_cli_refuses_what_it_cannot_do(tmp_path, fake, target, message):
    (tmp_path / "calc.py").write_text(CODE)
    r = cli(tmp_path, fake, "explain", target, "")
    assert r.returncode == 2 and message in r.stderr and fake.chat_requests() == []
    assert (tmp_path / "calc.py").read_text() == CODE


def test_cli_unknown_action_names_the_known_ones(tmp_path, fake):
    (tmp_path / "calc.py").write_text(CODE)
    r = cli(tmp_path, fake, "explian", "calc.py:1-2", "")
    assert r.returncode == 2 and "unknown action 'explian'" in r.stderr and "explain-comment" in r.stderr
    assert "shout" in r.stderr and fake.chat_requests() == []


async def test_show_explanation_names_its_action_and_output(tmp_path, fake):
    async with editor("visual-studio-code", tmp_path, base(fake), init_options={"stream": True}) as ed:
        uri = ed.open("calc.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(3, 0, 8, 0)})
        assert r["output"] == "show"
        [lens] = [x for x in await ed.lenses(uri) if x.command and x.command.command == "kimi.showExplanation"]
        shown = await ed.command("kimi.showExplanation", lens.command.arguments[0])
        assert (shown["action"], shown["output"]) == ("explain", "show") and shown["text"] == r["text"]
