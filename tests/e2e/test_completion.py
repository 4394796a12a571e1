"""Inline completion (ghost text) and next edit, over LSP against the fake's partial-mode completions.

The fake continues a partial assistant message with the JSON string after `fake-completion: ` in the prompt (a
comment in the file), so each test knows the exact ghost text the model sends."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types as lsp

from harness import base, editor, pos

CODE = '# fake-completion: "x * 2"\ndef double(x):\n    return \n\nprint(double(2))\n'
AT = (2, 11)  # after "    return "


def settings(fake, **completion) -> dict:
    return base(fake, completion={"debounceMs": 0, **completion}, previewEdits="auto")


async def complete(ed, uri, at, *, invoked=False, selected=None, timeout=10):
    params = lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        position=lsp.Position(*at),
        context=lsp.InlineCompletionContext(
            trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
            if invoked
            else lsp.InlineCompletionTriggerKind.Automatic,
            selected_completion_info=selected,
        ),
    )
    result = await asyncio.wait_for(ed.client.text_document_inline_completion_async(params), timeout)
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    return list(items)


def completions(fake):
    return [r for r in fake.chat_requests() if r.body["messages"][-1].get("partial")]


@pytest.mark.parametrize("profile", ["visual-studio-code", "neovim"])
async def test_ghost_text_is_the_models_continuation(profile, fake, tmp_path):
    async with editor(profile, tmp_path, settings(fake)) as ed:
        assert ed.server_capabilities.inline_completion_provider
        uri = ed.open("a.py", CODE)
        [item] = await complete(ed, uri, AT)
        assert item.insert_text == "x * 2"
        assert item.range == lsp.Range(start=lsp.Position(*AT), end=lsp.Position(*AT))
        assert item.command.command == "kimi.completionAccepted"
        [req] = completions(fake)
        body = req.body
        assert body["messages"][-1] == {"role": "assistant", "content": "    return ", "partial": True}
        assert body["model"] == "kimi-k2.6" and body["thinking"] == {"type": "disabled"}
        assert body["max_completion_tokens"] <= 12 * 24 and "tools" not in body and "temperature" not in body
        assert "```python\n# fake-completion" in body["messages"][1]["content"]


@pytest.mark.parametrize(
    "line,at,fake_text,shown",
    [
        ("    print(", 10, "x)", "x"),  # the editor's closing bracket is not typed twice
        ("    return ", 11, "```python\nx * 2\n```", "x * 2"),  # no fences
        ("    return ", 11, "    return x * 2", "x * 2"),  # no echo of the line
        ("    return ", 11, "   \n  ", None),  # nothing worth showing
        ("    return ", 11, "x\n" * 30, "\n".join(["x"] * 12)),  # at most maxLines
    ],
)
async def test_the_reply_is_cleaned(line, at, fake_text, shown, fake, tmp_path):
    import json

    rest = ")" if line.endswith("(") else ""
    code = f"# fake-completion: {json.dumps(fake_text)}\ndef f(x):\n{line}{rest}\n"
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", code)
        items = await complete(ed, uri, (2, at))
        assert [i.insert_text for i in items] == ([shown] if shown else [])


async def test_cache_and_typing_through_need_no_request(fake, tmp_path):
    async with editor("visual-studio-code", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", CODE)
        assert [i.insert_text for i in await complete(ed, uri, AT)] == ["x * 2"]
        assert [i.insert_text for i in await complete(ed, uri, AT)] == ["x * 2"]  # the same place: cached
        line, ch = AT
        for typed, rest in (("x", " * 2"), (" ", "* 2"), ("*", " 2")):
            ed.edit(uri, line, ch, line, ch, typed)
            ch += 1
            assert [i.insert_text for i in await complete(ed, uri, (line, ch))] == [rest]
        assert len(completions(fake)) == 1
        status = (await ed.command("kimi.status"))["completion"]
        assert status["api"] == 1 and status["fromCache"] == 4 and status["shown"] == 5


async def test_a_newer_request_cancels_the_older_and_its_stream(fake, tmp_path):
    fake.configure(completion_delay=3.0)
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", CODE)
        first = asyncio.ensure_future(complete(ed, uri, AT))
        await ed.wait_for(lambda: len(completions(fake)) == 1, what="the first completion sent")
        began = time.monotonic()
        fake.configure(completion_delay=0.0)
        second = await complete(ed, uri, AT, invoked=True)
        assert await first == [] and time.monotonic() - began < 2.5  # answered empty at once, not after 3 s
        assert [i.insert_text for i in second] == ["x * 2"] and len(completions(fake)) == 2
        await ed.wait_for(lambda: completions(fake)[0].disconnected_early, what="the first stream closed")


async def test_cancel_request_closes_the_stream(fake, tmp_path):
    fake.configure(completion_delay=5.0)
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", CODE)
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(*AT),
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
        )
        fut = asyncio.ensure_future(
            ed.client.protocol.send_request_async(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="ghost-1")
        )
        await ed.wait_for(lambda: len(completions(fake)) == 1, what="sent")
        ed.cancel_request("ghost-1")
        await ed.wait_for(lambda: completions(fake)[0].disconnected_early, what="the stream closed", timeout=4)
        fut.cancel()


async def test_a_model_that_always_thinks_is_refused_for_completion(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake, model="kimi-k2.7-code")) as ed:
        uri = ed.open("a.py", CODE)
        assert await complete(ed, uri, AT) == [] and await complete(ed, uri, AT, invoked=True) == []
        assert completions(fake) == []
        said = [m for m in ed.messages() if "cannot complete" in m]
        assert len(said) == 1 and "kimi-k2.6" in said[0] and "kimi-k2.5" in said[0]


async def test_paused_after_a_rate_limit(fake, tmp_path):
    fake.script("rate_limit")
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", CODE)
        assert await complete(ed, uri, AT) == []
        assert await complete(ed, uri, (4, 0)) == []  # paused: not even sent
        assert len(completions(fake)) == 1
        status = (await ed.command("kimi.status"))["completion"]
        assert status["paused"].startswith("completions paused: rate limit")


async def test_completions_leave_the_last_slot_to_explicit_actions(fake, tmp_path):
    async with editor("neovim", tmp_path, {**settings(fake), "maxConcurrentRequests": 1}) as ed:
        uri = ed.open("a.py", CODE)
        assert await complete(ed, uri, AT) == [] and completions(fake) == []
        assert "1 request at a time" in (await ed.command("kimi.status"))["completion"]["paused"]
        r = await ed.command("kimi.explain", {"uri": uri, "range": {"start": pos(1, 0), "end": pos(3, 0)}})
        assert r["text"]  # the user's own request still goes


async def test_disabled_and_the_selected_suggestion(fake, tmp_path):
    async with editor("visual-studio-code", tmp_path, settings(fake, enabled=False)) as ed:
        uri = ed.open("a.py", CODE)
        assert await complete(ed, uri, AT) == [] and completions(fake) == []
        ed.configure(settings(fake))
        await asyncio.sleep(0.3)
        selected = lsp.SelectedCompletionInfo(
            range=lsp.Range(start=lsp.Position(2, 11), end=lsp.Position(2, 11)), text="abs("
        )
        [item] = await complete(ed, uri, AT, selected=selected)
        assert item.insert_text == "abs(x * 2" and item.range.start == lsp.Position(2, 11)
        assert completions(fake)[-1].body["messages"][-1]["content"] == "    return abs("


async def test_acceptance_is_counted(fake, tmp_path):
    async with editor("visual-studio-code", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", CODE)
        [item] = await complete(ed, uri, AT)
        await ed.command(item.command.command, item.command.arguments[0])
        status = (await ed.command("kimi.status"))["completion"]
        assert status["accepted"] == 1 and status["cost"][0]["currency"] == "USD"


NEXT = "def area(w, h):\n    total = w * h\n    print(total)\n    return total\n"


async def test_next_edit_as_a_proposal(fake, tmp_path):
    async with editor(
        "visual-studio-code", tmp_path, settings(fake), init_options={"stream": True, "proposals": True}
    ) as ed:
        uri = ed.open("a.py", NEXT)
        ed.edit(uri, 1, 4, 1, 9, "area_")  # the user renames total on line 2
        await asyncio.sleep(0.1)
        r = await ed.command("kimi.nextEdit", {"uri": uri, "position": pos(2, 0)})
        assert r["proposed"] is True, r
        [p] = [x for x in ed.proposals if x["proposalId"] == r["proposalId"]]
        assert [h["newText"] for h in p["hunks"]] == ["    print(area_)\n    return area_\n"]
        user = fake.chat_requests()[-1].body["messages"][-1]["content"]
        assert '- line 2: "total" -> "area_"' in user and "Task: next-edit" in user


async def test_next_edit_at_the_cursor_is_ghost_text(fake, tmp_path):
    code = "def area(w, h):\n    total = w * h\n    return total\n"
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", code)
        ed.edit(uri, 1, 4, 1, 9, "size")
        await asyncio.sleep(0.1)
        r = await ed.command("kimi.nextEdit", {"uri": uri, "position": pos(2, 11)})
        assert r["inline"]["insertText"] == "size" and r["inline"]["range"]["end"] == pos(2, 16), r
        assert r["inline"]["command"]["command"] == "kimi.completionAccepted"
        assert ed.texts[uri].endswith("return total\n")  # nothing applied
        [item] = await complete(ed, uri, (2, 11))
        assert item.insert_text == "size" and item.range.end == lsp.Position(2, 16)
        assert len(completions(fake)) == 0  # the held next edit, not a new completion request


async def test_suggest_next_edit_code_action(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake)) as ed:
        uri = ed.open("a.py", NEXT)
        actions = await ed.code_actions(uri, {"start": pos(2, 0), "end": pos(2, 0)})
        [nxt] = [a for a in actions if a.title == "Kimi: Suggest next edit"]
        assert nxt.command.arguments[0] == {"uri": uri, "position": pos(2, 0)}
        selected = await ed.code_actions(uri, {"start": pos(1, 0), "end": pos(2, 0)})
        assert not [a for a in selected if a.title == "Kimi: Suggest next edit"]


async def test_typing_keystroke_by_keystroke_is_one_edit_for_next_edit(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options={"stream": True, "proposals": True}) as ed:
        uri = ed.open("a.py", NEXT)
        ed.edit(uri, 1, 4, 1, 9, "s")  # the selection replaced by the first key
        for n, key in enumerate("ize", start=5):
            ed.edit(uri, 1, n, 1, n, key)
        ed.edit(uri, 1, 8, 1, 8, "x")
        ed.edit(uri, 1, 8, 1, 9, "")  # a typo, taken back
        await asyncio.sleep(0.1)
        r = await ed.command("kimi.nextEdit", {"uri": uri, "position": pos(2, 0)})
        user = fake.chat_requests()[-1].body["messages"][-1]["content"]
        assert '- line 2: "total" -> "size"' in user and user.count("- line") == 1, user
        [p] = [x for x in ed.proposals if x["proposalId"] == r["proposalId"]]
        assert [h["newText"] for h in p["hunks"]] == ["    print(size)\n    return size\n"]
