"""What the server writes and renders: the answers folder (private, no planted links followed, names nobody can
guess) and the Markdown of hovers and shown answers (no remote images, raw HTML or link targets)."""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp
from markdown_it import MarkdownIt

from fault_helpers import safe_editor
from harness import base, rng
from kimi_lsp.core.markdown import safe_markdown
from kimi_lsp.lsp.features import reporting

UID = os.getuid()


def path_of(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Every candidate location under tmp_path: runtime dir, cache dir, temp dir."""
    run, cache, tmp = tmp_path / "run", tmp_path / "cache", tmp_path / "tmp"
    for d in (run, cache, tmp):
        d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return {"run": run, "cache": cache, "tmp": tmp}


def only_tmp_left(dirs, monkeypatch) -> Path:
    """No runtime dir, and a cache dir that cannot be created: the /tmp fallback."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    blocker = dirs["cache"] / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    return dirs["tmp"] / f"kimi-lsp-{UID}"


def assert_private(folder: Path) -> None:
    st_ = os.lstat(folder)
    assert stat.S_ISDIR(st_.st_mode) and st_.st_uid == UID and stat.S_IMODE(st_.st_mode) == 0o700


# -- the answers folder ------------------------------------------------------------------------------------------


def test_answers_are_private_files_in_the_runtime_dir(dirs):
    uri = reporting._write_markdown("req1", "# hello\n")
    path = path_of(uri)
    assert path.parent == dirs["run"] / "kimi-lsp"
    assert_private(path.parent)
    st_ = os.lstat(path)
    assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600 and st_.st_uid == UID
    assert path.read_text() == "# hello\n"


def test_the_cache_dir_then_a_private_tmp_folder(dirs, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    folder = path_of(reporting._write_markdown("r", "x")).parent
    assert folder.is_relative_to(dirs["cache"])
    assert_private(folder)
    fallback = only_tmp_left(dirs, monkeypatch)
    assert path_of(reporting._write_markdown("r", "x")).parent == fallback
    assert_private(fallback)


def test_names_are_unpredictable(dirs):
    names = {path_of(reporting._write_markdown("same-id", "x")).name for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"kimi-same-id-[0-9a-f]{32}\.md", name), name  # the id for the reader, then 128 random bits


@pytest.mark.parametrize("plant", ["symlink", "open mode", "other owner"])
def test_a_planted_tmp_folder_is_refused(plant, dirs, monkeypatch, tmp_path):
    folder = only_tmp_left(dirs, monkeypatch)
    victim = tmp_path / "victim"
    victim.mkdir()
    old = victim / "kimi-notes.md"
    old.write_text("the victim's own file")
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    if plant == "symlink":
        folder.symlink_to(victim)
    elif plant == "open mode":
        folder.mkdir()
        folder.chmod(0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
    with pytest.raises(OSError):
        reporting._write_markdown("r", "attacker reads this")
    reporting.prune_answers()
    assert sorted(p.name for p in victim.iterdir()) == ["kimi-notes.md"] and old.read_text() == "the victim's own file"
    if plant != "symlink":
        assert list(folder.iterdir()) == []


def test_an_existing_name_is_never_written_through(dirs, monkeypatch, tmp_path):
    """O_CREAT|O_EXCL|O_NOFOLLOW: even a guessed name with a planted link (or a file) is not followed or reused."""
    monkeypatch.setattr(secrets, "token_hex", lambda n=16: "0" * 32)
    folder = dirs["run"] / "kimi-lsp"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / f"kimi-r-{'0' * 32}.md").symlink_to(victim)
    with pytest.raises(FileExistsError):
        reporting._write_markdown("r", "overwrite?")
    assert victim.read_text() == "precious"


def test_prune_removes_old_answers_only_and_follows_no_link(dirs, tmp_path):
    folder = path_of(reporting._write_markdown("fresh", "new")).parent
    old = path_of(reporting._write_markdown("old", "old"))
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    victim = tmp_path / "victim.md"
    victim.write_text("keep me")
    os.utime(victim, (week_ago, week_ago))
    link = folder / "kimi-link.md"
    link.symlink_to(victim)
    other = folder / "notes.txt"
    other.write_text("not ours")
    os.utime(other, (week_ago, week_ago))
    reporting.prune_answers()
    left = sorted(p.name for p in folder.iterdir())
    assert old.name not in left and len([n for n in left if n.startswith("kimi-") and n != "kimi-link.md"]) == 1
    assert victim.read_text() == "keep me" and "notes.txt" in left


# -- safe Markdown ------------------------------------------------------------------------------------------------

FENCED = '```html\n<img src="https://evil.example/a">\n![x](https://evil.example/b)\n[l](https://evil.example/c)\n```\n'
SAFE_MARKDOWN = [
    # images: alt text only
    ("![x](https://evil.example/?q=secret)", "x"),
    ('see ![the diagram](https://evil.example/a.png "title") here', "see the diagram here"),
    ("![](https://evil.example/?q=1)", ""),
    ("![alt][img]\n\n[img]: https://evil.example/p.png\n", "alt\n\n"),
    ("# ![logo](https://evil.example/l.png) Title", "# logo Title"),
    # links: text only, every style
    ("[docs](https://evil.example/?q=1)", "docs"),
    ("[w](https://evil.example/a_(b)) and [v](<https://evil.example/a b> 'T')", "w and v"),
    ("[c](javascript:alert(1))", "c"),
    ("[a [b] c](https://evil.example/)", "a [b] c"),
    ("[![x](https://evil.example/i.png)](https://evil.example/l)", "x"),
    (
        '[docs][1] and [more][]\n\n[1]: https://evil.example/?q=s\n[more]: <https://evil.example/m> "t"\n',
        "docs and more\n\n",
    ),
    ("[Docs]\n\n[docs]: https://evil.example/\n", "Docs\n\n"),
    ("[not defined] stays", "[not defined] stays"),
    ("see <https://evil.example/?q=secret> now", "see  now"),
    ("mail <someone@evil.example>", "mail "),
    # raw HTML: tags dropped, text kept
    ('<img src="https://evil.example/?q=s">', ""),
    ("a <b>bold</b> <span class='x'>word</span>", "a bold word"),
    ("<div>\nhello\n</div>\n", "\nhello\n\n"),
    ("<!-- hidden -->shown", "shown"),
    ("<<b>img src=https://evil.example/x>", ""),
    ("if a<b then x, and c > d", "if a\\<b then x, and c > d"),
    ("<b or c >", ""),
    ("&lt;img src=https://evil.example/&gt;", "&lt;img src=https://evil.example/&gt;"),
    # code: untouched
    ("`![x](https://evil.example)` and `<img src=x>`", "`![x](https://evil.example)` and `<img src=x>`"),
    ("``a ` ![x](https://evil.example) ``", "``a ` ![x](https://evil.example) ``"),
    (FENCED, FENCED),
    ("~~~\n<b>![x](https://evil.example)</b>\n~~~\n", "~~~\n<b>![x](https://evil.example)</b>\n~~~\n"),
    (
        "1. step\n\n   ```java\n   List<String> xs; // ![x](y)\n   ```\n",
        "1. step\n\n   ```java\n   List<String> xs; // ![x](y)\n   ```\n",
    ),
    ("> ```\n> <img src=https://evil.example>\n> ```\n", "> ```\n> <img src=https://evil.example>\n> ```\n"),
    ("text\n```\n![x](https://evil.example) still streaming", "text\n```\n![x](https://evil.example) still streaming"),
    ("    <img src=https://evil.example> indented code\n", "    <img src=https://evil.example> indented code\n"),
    # not code after all
    ("` ![x](https://evil.example/)", "` x"),
    ("`\n\n![x](https://evil.example/)\n\n`", "`\n\nx\n\n`"),
    ("\\![x](https://evil.example/)", "\\!x"),
    ("\\[x](https://evil.example/)", "\\[x](https://evil.example/)"),
    ("<div>\n```\n<img src=https://evil.example>\n```\n</div>\n", "\n```\n<img src=https://evil.example>\n```\n\n"),
    # ordinary Markdown is left as it is
    *[(t, t) for t in ("**Bold**, _it_, ~~gone~~, `code`, https://example.com/plain", "- one\n- two\n\n1. x\n2. y\n")],
    ("| a | b |\n|---|---|\n| ![x](https://evil.example/i) | <b>c</b> |", "| a | b |\n|---|---|\n| x | c |"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), SAFE_MARKDOWN)
def test_safe_markdown(text, expected):
    assert safe_markdown(text) == expected


_PARSER = MarkdownIt("commonmark")
_DANGEROUS = {"image", "link_open", "html_inline", "html_block"}


def dangerous(text: str) -> list[str]:
    found = []
    for token in _PARSER.parse(text):
        found += [t.type for t in [token, *(token.children or [])] if t.type in _DANGEROUS]
    return found


PIECES = [
    "![",
    "[",
    "]",
    "(",
    ")",
    "<",
    ">",
    "`",
    "```",
    "~~~",
    "\n",
    "\n\n",
    " ",
    "    ",
    "> ",
    "- ",
    "1. ",
    "a",
    "https://e/",
    "img src=x",
    "!",
    "\\",
    ":",
    '"',
    "'",
    "=",
    "/",
    "*",
    "b>",
    "!--",
    "-->",
    "[r]: /u\n",
    "&lt;",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_nothing_dangerous_survives(text):
    out = safe_markdown(text)
    assert dangerous(out) == [], (text, out)


# -- where it is used ------------------------------------------------------------------------------------------

EVIL = "![x](https://evil.example/?q=1) <img src=https://evil.example/i>"  # within the fake's 80 characters


async def test_hover_and_shown_answer_are_safe(fake, tmp_path):
    (tmp_path / "notes.md").write_text(EVIL + "\n")
    async with safe_editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", "x = 1\ny = 2\n")
        r = await ed.command("kimi.ask", {"uri": uri, "range": rng(0, 0, 1, 0), "instruction": "read notes.md"})
        assert "evil.example" in r["text"]  # the model's answer itself, unchanged in the result
        hover = await ed.hover(uri, 0, 0)
        assert hover is not None and "read notes.md: 1: x" in hover.contents.value
        assert "evil.example" not in hover.contents.value and "<img" not in hover.contents.value
        [shown] = ed.client.shown_documents
        document = path_of(shown.uri).read_text()
        assert "read notes.md: 1: x" in document and "evil.example" not in document


async def test_the_answer_as_a_message_is_safe():
    sent: list[lsp.ShowMessageParams] = []

    class Editor:
        stream_ui = False

        def capability(self, path: str):
            return None  # no showDocument: the answer comes as a message

        def window_show_message(self, params: lsp.ShowMessageParams) -> None:
            sent.append(params)

    await reporting.show_answer(
        Editor(), "r1", "Explain (model ![m](https://evil.example/m))", EVIL + " [l](https://evil.example/l)"
    )
    [message] = sent
    assert "evil.example" not in message.message and "x" in message.message
