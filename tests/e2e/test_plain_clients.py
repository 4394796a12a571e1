"""Editors without our plugins (issue #12), driven with the capabilities the real ones sent (eglot 1.9, ALE 3.3,
Neovim 0.7; captured by tests/editors/test_plain_editors.py): what they declare is honoured exactly."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types as lsp

from harness import FAKE_KEY, base, editor, rng
from kimi_lsp.fake import Fault

EGLOT, ALE, NVIM07 = "emacs-28-eglot-1.9", "vim-9-ale-3.3", "neovim-0.7"
CODE = "def average(values):\n    total = 0\n    for v in values:\n        total = total + v\n    return total\n"
BODY = rng(1, 0, 4, 0)


def plain(fake, **extra) -> dict:
    """Settings as a plain editor sends them: no commandResult, so the server's default for such clients holds."""
    settings = base(fake, **extra)
    if "commandResult" not in extra:
        settings.pop("commandResult")
    return settings


async def test_commands_answer_at_once_and_the_job_goes_on(fake, tmp_path):
    """eglot waits for executeCommand synchronously (10 s, Emacs frozen): the answer comes at once, the edit later."""
    fake.script(Fault("slow_first", delay=1.5))
    async with editor(EGLOT, tmp_path, plain(fake)) as ed:
        uri = ed.open("a.py", CODE)
        started = asyncio.get_running_loop().time()
        r = await ed.command("kimi.refactor", {"uri": uri, "range": BODY, "instruction": "rename total to acc"})
        assert r["started"] is True and r["requestId"] and "applied" not in r
        assert asyncio.get_running_loop().time() - started < 1.0
        assert ed.texts[uri] == CODE
        await ed.wait_for(lambda: "acc = 0" in ed.texts[uri], what="the edit, after the answer")
        assert "acc = acc + v" in ed.texts[uri]


async def test_an_immediate_job_is_cancelled_by_kimi_cancel(fake, tmp_path):
    fake.script(Fault("slow_first", delay=5))
    async with editor(EGLOT, tmp_path, plain(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": BODY})
        await ed.wait_for(lambda: fake.chat_requests(), what="the request at the fake")
        assert (await ed.command("kimi.cancel", {"requestId": r["requestId"]}))["cancelled"] == 1
        await asyncio.sleep(0.3)
        assert ed.texts[uri] == CODE and ed.applied == []
        assert (await ed.command("kimi.status"))["running"] == 0


@pytest.mark.parametrize("setting,immediate", [("final", False), ("immediate", True)])
async def test_command_result_setting_overrides_the_default(fake, tmp_path, setting, immediate):
    async with editor(EGLOT, tmp_path, plain(fake, commandResult=setting)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        assert ("started" in r) is immediate and ("text" in r) is not immediate


async def test_no_apply_edit_capability_means_no_apply_edit(fake, tmp_path):
    """ALE declares applyEdit: false (and never answers one): the suggestion is shown and kept on the code."""
    async with editor(ALE, tmp_path, None) as ed:
        ed.configure(base(fake))  # ALE's lsp_config arrives as didChangeConfiguration
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": BODY, "instruction": "rename total to acc"})
        assert r["applied"] is False and "workspace.applyEdit" in r["message"]
        assert ed.applied == [] and ed.texts[uri] == CODE
        shown = "\n".join(ed.messages())
        assert "acc = 0" in shown and "```" not in shown  # plain text: ALE shows messages as they are
        hover = await ed.hover(uri, 2, 4)
        assert hover is not None and hover.contents.kind == lsp.MarkupKind.PlainText
        assert "acc = acc + v" in hover.contents.value


async def test_show_document_only_when_supported(fake, tmp_path):
    """Neovim 0.7 declares showDocument.support = false: the explanation comes as a (plain text) message."""
    async with editor(NVIM07, tmp_path, None, init_options={"kimi": base(fake)}) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        words = " ".join(r["text"].replace("`", "").replace("*", "").split()[-6:])
        await ed.wait_for(
            lambda: any(m.startswith("Kimi: Explain") and words in " ".join(m.split()) for m in ed.messages()),
            what="the whole explanation as a message",
        )
        assert ed.client.shown_documents == []


async def test_hover_is_plain_text_where_markdown_is_not_accepted(fake, tmp_path):
    async with editor(EGLOT, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        hover = await ed.hover(uri, 2, 4)
        assert hover.contents.kind == lsp.MarkupKind.PlainText
        assert "**" not in hover.contents.value and "Kimi: Explain" in hover.contents.value
    async with editor(NVIM07, tmp_path, None, init_options={"kimi": base(fake)}) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        assert (await ed.hover(uri, 2, 4)).contents.kind == lsp.MarkupKind.Markdown


async def test_no_settings_from_the_editor_is_said_once(fake, tmp_path):
    """ALE answers no workspace/configuration; with nothing pushed either, the defaults are named, once."""
    async with editor(ALE, tmp_path, None) as ed:
        uri = ed.open("a.py", CODE)
        for _ in range(2):
            r = await ed.command("kimi.explain", {"uri": uri, "range": BODY})
            await ed.wait_for(
                lambda: any("no settings came from the editor" in m for m in ed.messages()), what="the notice"
            )
            assert r["started"] is True
        notices = [m for m in ed.client.messages if "no settings came from the editor" in m.message]
        assert len(notices) == 1 and notices[0].type == lsp.MessageType.Warning
        assert "https://api.moonshot.ai/v1" in notices[0].message and "initializationOptions" in notices[0].message
        assert fake.requests == []  # the default URL is the real API: nothing reached the fake


async def test_pushed_settings_are_no_reason_for_the_notice(fake, tmp_path):
    async with editor(ALE, tmp_path, None) as ed:
        ed.configure(base(fake))  # ALE's lsp_config arrives as didChangeConfiguration
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        assert "text" in r and not any("no settings" in m for m in ed.messages())


async def test_instruction_from_a_comment_in_the_selection(fake, tmp_path):
    code = "def f(values):\n    # kimi: rename total to acc\n    total = 0\n    return total\n"
    async with editor(NVIM07, tmp_path, None, init_options={"kimi": base(fake)}) as ed:
        uri = ed.open("a.py", code)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(1, 0, 4, 0)})
        assert r["applied"] is True
        user = fake.chat_requests()[-1].body["messages"][-1]["content"]
        selected = user.split("Selected code")[-1]  # the file part above shows the file as it is, comment included
        assert "Instruction: rename total to acc" in user and "# kimi:" not in selected
        assert ed.texts[uri].startswith("def f(values):\n    acc = 0\n    return acc\n")
        assert "kimi:" not in ed.texts[uri]


async def test_declined_and_stale_edits_are_told_apart(fake, tmp_path):
    async with editor(EGLOT, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        ed.decline_edits = True
        r = await ed.command("kimi.refactor", {"uri": uri, "range": BODY})
        assert r["applied"] is False and "declined" in r["message"] and ed.texts[uri] == CODE


async def test_preview_always_asks_in_eglot(fake, tmp_path):
    """eglot declares no window.showMessage extras, but answers window/showMessageRequest."""
    async with editor(EGLOT, tmp_path, base(fake, previewEdits="always")) as ed:
        asked: list = []

        @ed.client.feature(lsp.WINDOW_SHOW_MESSAGE_REQUEST)
        def ask(params: lsp.ShowMessageRequestParams):
            asked.append(params.message)
            return lsp.MessageActionItem(title="Discard")

        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": BODY})
        assert asked and "apply" in asked[0] and r["applied"] is False and ed.texts[uri] == CODE


async def test_the_log_says_what_happened(fake, tmp_path):
    log = tmp_path / "server.log"
    fake.script("unauthorized")
    async with editor(EGLOT, tmp_path, base(fake), log_file=log) as ed:
        uri = ed.open("a.py", CODE)
        await ed.command("kimi.explain", {"uri": uri, "range": BODY})
        await ed.command("kimi.explain", {"uri": uri, "range": BODY})
    text = log.read_text()
    assert f"explain: model kimi-k2.5 at {fake.base_url} (settings from workspace/configuration)" in text
    assert "WARNING" in text and "explain failed (unauthorized)" in text
    assert FAKE_KEY not in text


async def test_debug_log_has_request_bodies_without_key_or_image_data(fake, tmp_path):
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    (tmp_path / "dot.png").write_bytes(png)
    log = tmp_path / "server.log"
    async with editor(EGLOT, tmp_path, base(fake), log_file=log) as ed:
        uri = ed.open("a.py", f"# key {FAKE_KEY}\nx = 1\n")
        await ed.command(
            "kimi.ask", {"prompt": "what is this?", "uri": uri, "range": rng(0, 0, 2, 0), "images": ["dot.png"]}
        )
    text = log.read_text()
    assert "POST /chat/completions" in text and "what is this?" in text
    assert "[image, " in text and base64.b64encode(png).decode()[:20] not in text
    assert FAKE_KEY not in text and "[redacted]" in text
