"""Proposals (docs/protocol.md): for clients that opt in, edits are held for review in the file and land only when
accepted, one undo step, rebased over typing outside them; plain clients are unchanged."""

from __future__ import annotations

import pytest

from harness import base, editor, rng

CODE = (
    "def total(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n\n\nprint(total([1, 2]))\n"
)
SEL = rng(0, 0, 5, 0)
OPTS = {"stream": True, "proposals": True}


def settings(fake, **extra) -> dict:
    return base(fake, previewEdits="auto", **extra)  # the harness default, "never", applies edits at once


def last(ed, pid=None) -> dict:
    return [p for p in ed.proposals if pid in (None, p["proposalId"])][-1]


async def refactor(ed, uri, instruction="rename total to acc", r=SEL) -> dict:
    return await ed.command("kimi.refactor", {"uri": uri, "range": r, "instruction": instruction})


@pytest.mark.parametrize("profile", ["visual-studio-code", "neovim"])
async def test_proposal_instead_of_apply_edit_then_accept_all(profile, fake, tmp_path):
    async with editor(profile, tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        r = await refactor(ed, uri)
        assert r["proposed"] is True and r["applied"] is False and ed.applied == []
        assert ed.texts[uri] == CODE  # nothing changed until accepted
        p = last(ed, r["proposalId"])
        assert p["state"] == "ready" and p["uri"] == uri and p["action"] == "refactor" and p["output"] == "replace"
        assert p["version"] == ed.versions[uri] and p["model"] == "kimi-k2.5"
        hunks = p["hunks"]
        assert [h["oldText"] for h in hunks] == [
            "def total(xs):\n    total = 0\n",
            "        total += x\n    return total\n",
        ]
        assert hunks[0]["range"] == rng(0, 0, 2, 0) and hunks[0]["newText"].startswith("def acc(xs):\n")
        listed = await ed.command("kimi.listProposals", {"uri": uri})
        assert [x["proposalId"] for x in listed["proposals"]] == [r["proposalId"]]
        res = await ed.command("kimi.acceptProposal", {"proposalId": r["proposalId"]})
        assert res == {"applied": True, "hunks": ["h1", "h2"], "remaining": []}
        assert ed.texts[uri] == CODE.replace("total", "acc", 5).replace("print(acc", "print(total")
        [applied] = ed.applied  # one TextDocumentEdit: one undo step
        [change] = applied.edit.document_changes
        assert len(change.edits) == 2 and applied.edit.change_annotations is None
        assert last(ed)["state"] == "accepted"
        assert (await ed.command("kimi.listProposals", {}))["proposals"] == []


async def test_accept_one_hunk_then_reject_the_rest(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        pid = (await refactor(ed, uri))["proposalId"]
        res = await ed.command("kimi.acceptProposal", {"proposalId": pid, "hunks": ["h2"]})
        assert res == {"applied": True, "hunks": ["h2"], "remaining": ["h1"]}
        assert ed.texts[uri] == CODE.replace(
            "        total += x\n    return total\n", "        acc += x\n    return acc\n"
        )
        p = last(ed, pid)
        assert p["state"] == "ready" and [h["id"] for h in p["hunks"]] == ["h1"]
        assert p["hunks"][0]["range"] == rng(0, 0, 2, 0)
        res = await ed.command("kimi.rejectProposal", {"proposalId": pid})
        assert res == {"rejected": ["h1"], "remaining": []} and last(ed)["state"] == "rejected"
        assert ed.texts[uri].startswith("def total(xs):\n    total = 0\n")


async def test_reject_leaves_the_document_byte_identical(fake, tmp_path):
    text = CODE.replace("\n", "\r\n")
    async with editor("visual-studio-code", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", text)
        pid = (await refactor(ed, uri))["proposalId"]
        assert (await ed.command("kimi.rejectProposal", {"proposalId": pid}))["remaining"] == []
        assert ed.texts[uri] == text and ed.applied == []
        res = await ed.command("kimi.acceptProposal", {"proposalId": pid})
        assert res["applied"] is False and "no longer open" in res["message"]
        assert ed.texts[uri] == text


async def test_typing_outside_rebases_the_accept(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        pid = (await refactor(ed, uri))["proposalId"]
        ed.edit(uri, 0, 0, 0, 0, "import os\n\n")  # above the proposal
        ed.edit(uri, 10, 0, 10, 0, "# the end\n")  # below it
        await ed.wait_for(lambda: True)
        res = await ed.command("kimi.acceptProposal", {"proposalId": pid})
        assert res["applied"] is True
        expected = "import os\n\n" + CODE.replace("total", "acc", 5).replace("print(acc", "print(total")
        assert ed.texts[uri] == expected[: expected.index("print(")] + "print(total([1, 2]))\n# the end\n"


async def test_typing_inside_a_hunk_makes_it_stale(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        pid = (await refactor(ed, uri))["proposalId"]
        ed.edit(uri, 1, 4, 1, 9, "count")  # inside h1
        await ed.wait_for(lambda: last(ed, pid)["state"] == "stale", what="stale notification")
        assert "edited" in last(ed, pid)["message"]
        typed = ed.texts[uri]
        res = await ed.command("kimi.acceptProposal", {"proposalId": pid})
        assert res["applied"] is False and "stale" in res["message"] and ed.texts[uri] == typed
        assert any("stale" in m for m in ed.messages())


async def test_a_new_action_on_the_same_range_replaces_the_proposal(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        first = (await refactor(ed, uri))["proposalId"]
        second = (await ed.command("kimi.document", {"uri": uri, "range": SEL}))["proposalId"]
        assert first != second and last(ed, first)["state"] == "replaced"
        assert [p["proposalId"] for p in (await ed.command("kimi.listProposals", {}))["proposals"]] == [second]


async def test_closing_the_document_makes_it_stale(fake, tmp_path):
    async with editor("neovim", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        pid = (await refactor(ed, uri))["proposalId"]
        ed.close(uri)
        await ed.wait_for(lambda: last(ed, pid)["state"] == "stale", what="stale on close")


async def test_refine_is_a_follow_up_turn(fake, tmp_path):
    async with editor("visual-studio-code", tmp_path, settings(fake), init_options=OPTS) as ed:
        uri = ed.open("a.py", CODE)
        pid = (await refactor(ed, uri))["proposalId"]
        first_body = fake.chat_requests()[-1].body
        r = await ed.command("kimi.refineProposal", {"proposalId": pid, "instruction": "uppercase it"})
        assert r["proposalId"] == pid and r["proposed"] is True
        body = fake.chat_requests()[-1].body
        n = len(first_body["messages"])
        assert body["messages"][:n] == first_body["messages"]  # the original request, as sent (and cached)
        assistant, user = body["messages"][n:]
        assert assistant["role"] == "assistant" and "def acc(xs):" in assistant["content"]
        assert user["role"] == "user" and "Instruction: uppercase it" in user["content"]
        states = [p["state"] for p in ed.proposals if p["proposalId"] == pid]
        assert states == ["ready", "refining", "ready"]
        [refining] = [p for p in ed.proposals if p["state"] == "refining"]
        assert refining["requestId"] == r["requestId"]  # the refinement's own, to cancel it
        p = last(ed, pid)
        assert "DEF ACC(XS):" in p["hunks"][0]["newText"] and ed.texts[uri] == CODE
        assert any(s["kind"] == "done" and s["requestId"] == r["requestId"] for s in ed.stream)
        res = await ed.command("kimi.acceptProposal", {"proposalId": pid})
        assert res["applied"] is True and "DEF ACC(XS):" in ed.texts[uri]


@pytest.mark.parametrize("options", [{"stream": True}, None], ids=["stream-only", "plain"])
async def test_clients_without_proposals_are_unchanged(options, fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake), init_options=options) as ed:
        uri = ed.open("a.py", CODE)
        r = await refactor(ed, uri)
        assert r["applied"] is True and "proposalId" not in r and ed.proposals == []
        assert "def acc(xs):" in ed.texts[uri]


async def test_preview_edits_always_keeps_the_editor_preview(fake, tmp_path):
    async with editor(
        "visual-studio-code", tmp_path, {**settings(fake), "previewEdits": "always"}, init_options=OPTS
    ) as ed:
        uri = ed.open("a.py", CODE)
        r = await refactor(ed, uri)
        assert "proposalId" not in r and ed.proposals == [] and ed.applied
        assert ed.applied[0].edit.change_annotations["kimi"].needs_confirmation is True
