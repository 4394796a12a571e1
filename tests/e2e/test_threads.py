"""Conversations: follow-ups carry the earlier turns (as each model requires them replayed), references in a
question, threads kept across a restart, long threads trimmed with a note, export, delete, and code applied back."""

from __future__ import annotations

import pytest

from harness import base, editor, rng, server_env
from kimi_lsp.fake import Fault

CODE = "def f(x):\n    return x * 2\n\n\nprint(f(2))\n"
SEL = rng(0, 0, 2, 0)


async def explain_then_ask(ed, uri, question="and why not a dict?"):
    first = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
    second = await ed.command("kimi.ask", {"prompt": question, "threadId": first["threadId"]})
    return first, second


@pytest.mark.parametrize("profile", ["visual-studio-code", "neovim"])
async def test_a_follow_up_carries_the_earlier_turns(profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake, model="moonshot-v1-32k")) as ed:
        uri = ed.open("a.py", CODE)
        first, second = await explain_then_ask(ed, uri)
        assert second["threadId"] == first["threadId"] and (first["turn"], second["turn"]) == (0, 1)
        one, two = (r.body["messages"] for r in fake.chat_requests())
        assert two[:2] == one  # the first request, exactly as sent (cached)
        assert two[2] == {"role": "assistant", "content": first["text"]}  # no reasoning for a model without thinking
        assert two[3] == {"role": "user", "content": "Question: and why not a dict?"}
        assert second["text"] == "**fake-kimi** answers: and why not a dict?"
        listed = (await ed.command("kimi.threads", {}))["threads"]
        assert [t["threadId"] for t in listed] == [first["threadId"]] and listed[0]["turns"] == 2


@pytest.mark.parametrize(
    "model,thinking",
    [("kimi-k2.6", {"type": "enabled", "keep": "all"}), ("kimi-k2.7-code", None), ("kimi-k3", None)],
)
async def test_replay_follows_each_models_rules(model, thinking, fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake, model=model)) as ed:
        uri = ed.open("a.py", CODE)
        first, second = await explain_then_ask(ed, uri)
        assert "error" not in second, second  # the fake rejects a replay without the reasoning
        body = fake.chat_requests()[-1].body
        assert body.get("thinking") == thinking
        [answer] = [m for m in body["messages"] if m["role"] == "assistant"]
        assert answer["reasoning_content"] == first["reasoning"] and answer["reasoning_content"]


async def test_references_are_resolved_and_secrets_refused(fake, tmp_path):
    (tmp_path / "lib.py").write_text("def helper():\n    return 42\n\n# more\n")
    (tmp_path / ".env").write_text("SECRET=hunter2\n")
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command(
            "kimi.ask",
            {"prompt": "compare #file:lib.py:1-2 with #selection, see #file:.env", "uri": uri, "range": SEL},
        )
        assert r["references"] == ["lib.py:1-2", "#selection", ".env (refused)"]
        user = fake.chat_requests()[-1].body["messages"][-1]["content"]
        assert "1: def helper():" in user and "2:     return 42" in user and "# more" not in user
        assert "hunter2" not in str(fake.chat_requests()[-1].body)
        follow = await ed.command("kimi.ask", {"prompt": "and #symbol:helper?", "threadId": r["threadId"]})
        assert follow["references"] == ["helper (lib.py:1)"]
        assert "def helper():" in fake.chat_requests()[-1].body["messages"][-1]["content"]


async def test_a_thread_survives_a_restart(fake, tmp_path):
    env = server_env()
    async with editor("neovim", tmp_path, base(fake), env=env) as ed:
        uri = ed.open("a.py", CODE)
        first = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
    async with editor("visual-studio-code", tmp_path, base(fake), env=env) as ed:
        listed = (await ed.command("kimi.threads", {}))["threads"]
        assert [t["threadId"] for t in listed] == [first["threadId"]]
        r = await ed.command("kimi.ask", {"prompt": "still there?", "threadId": first["threadId"]})
        assert r["threadId"] == first["threadId"] and r["turn"] == 1
        assert fake.chat_requests()[-1].body["messages"][2]["content"] == first["text"]
        shown = await ed.command("kimi.thread", {"threadId": first["threadId"]})
        assert [t["question"] for t in shown["turns"]] == ["", "still there?"]
        exported = (await ed.command("kimi.exportThread", {"threadId": first["threadId"]}))["markdown"]
        assert exported.startswith("# ") and "## 2. still there?" in exported and "still there?" in exported
        assert (await ed.command("kimi.deleteThread", {"threadId": first["threadId"]}))["deleted"] is True
        assert (await ed.command("kimi.threads", {}))["threads"] == []


async def test_a_long_thread_leaves_its_oldest_follow_ups_out_with_a_note(fake, tmp_path):
    async with editor("neovim", tmp_path, base(fake, model="moonshot-v1-8k")) as ed:
        uri = ed.open("a.py", CODE)
        first = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        tid, notes = first["threadId"], []
        for n in range(4):
            r = await ed.command("kimi.ask", {"prompt": f"question {n}: " + "word " * 1500, "threadId": tid})
            assert "error" not in r, r
            notes.append(r.get("note", ""))
        assert notes[0] == "" and "left out to fit moonshot-v1-8k's window" in notes[-1]
        sent = fake.chat_requests()[-1].body["messages"]
        assert "question 0" not in str(sent) and "question 3" in sent[-1]["content"]
        assert sent[:2] == fake.chat_requests()[0].body["messages"]  # the first request is always kept


async def test_a_code_block_is_applied_as_a_proposal(fake, tmp_path):
    fake.script(Fault("reply", content="Like this:\n```python\ndef f(y):\n    return y * 2\n```\n"))
    opts = {"stream": True, "proposals": True}
    async with editor("visual-studio-code", tmp_path, base(fake, previewEdits="auto"), init_options=opts) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.ask", {"prompt": "rename x to y", "uri": uri, "range": SEL})
        ed.edit(uri, 5, 0, 5, 0, "# typed meanwhile\n")
        applied = await ed.command("kimi.applyFromThread", {"threadId": r["threadId"], "turn": 0, "block": 0})
        assert applied["proposed"] is True and ed.texts[uri] == CODE + "# typed meanwhile\n"
        [p] = [x for x in ed.proposals if x["proposalId"] == applied["proposalId"]]
        assert [h["newText"] for h in p["hunks"]] == ["def f(y):\n    return y * 2\n"]
        await ed.command("kimi.acceptProposal", {"proposalId": applied["proposalId"]})
        assert ed.texts[uri] == "def f(y):\n    return y * 2\n\n\nprint(f(2))\n# typed meanwhile\n"
        bad = await ed.command("kimi.applyFromThread", {"threadId": r["threadId"], "turn": 0, "block": 3})
        assert bad["applied"] is False and "no code block 3" in bad["error"]["message"]


async def test_a_code_block_that_names_its_file_and_lines_goes_there(fake, tmp_path):
    lib = "def helper():\n    return 1\n\n\ndef other():\n    pass\n"
    (tmp_path / "lib.py").write_text(lib)
    (tmp_path / ".env").write_text("X=1\n")
    answer = "Change both:\n```python lib.py:1-2\ndef helper():\n    return 2\n```\n```python .env:1-1\nX=2\n```\n"
    fake.script(Fault("reply", content=answer))
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.ask", {"prompt": "make helper return 2", "uri": uri, "range": SEL})
        closed = await ed.command("kimi.applyFromThread", {"threadId": r["threadId"], "turn": 0, "block": 0})
        assert closed["applied"] is False and "open lib.py in the editor first" in closed["error"]["message"]
        lib_uri = ed.open("lib.py", lib)
        done = await ed.command("kimi.applyFromThread", {"threadId": r["threadId"], "turn": 0, "block": 0})
        assert done["applied"] is True and ed.texts[lib_uri] == lib.replace("return 1", "return 2")
        assert ed.texts[uri] == CODE  # not the code the conversation started from
        secret = await ed.command("kimi.applyFromThread", {"threadId": r["threadId"], "turn": 0, "block": 1})
        assert secret["applied"] is False and ".env" in secret["error"]["message"]


async def test_stream_start_names_the_thread_and_the_clients_tag(fake, tmp_path):
    async with editor("visual-studio-code", tmp_path, base(fake), init_options={"stream": True}) as ed:
        first = await ed.command("kimi.ask", {"prompt": "what is a monad?", "tag": "question-1"})
        second = await ed.command("kimi.ask", {"prompt": "and?", "threadId": first["threadId"], "tag": "q-2"})
        starts = {s["requestId"]: s for s in ed.stream if s["kind"] == "start"}
        assert starts[first["requestId"]]["tag"] == "question-1" and "threadId" not in starts[first["requestId"]]
        assert starts[second["requestId"]]["tag"] == "q-2"
        assert starts[second["requestId"]]["threadId"] == first["threadId"]
