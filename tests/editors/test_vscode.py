"""The VS Code extension in a real VS Code: code-server in headless Chromium, driven by Playwright.

One code-server (with the packaged .vsix installed into a throw-away profile) serves the whole module; the
tests run in order against it, each checking one user-visible flow end to end through the real kimi-lsp and
the fake Moonshot API: code action edit, streamed explanation panel, a rejected key's diagnostic and its
quick fix (the client-side `kimi.enterApiKey`), switching models from the status bar, "Explain as Comment" at the
ruler's width, custom actions from the palette, the code lens "show" and "Clear Explanations", asking about a
workspace image with a vision model, and edits as proposals reviewed in the file (shown with marks, ghost text and
a diff beside; Accept, Reject, Refine, the keyboard, going stale) and `kimi.previewEdits: "always"`.

`scripts/setup-vscode-e2e.sh` provides the tools (Node 24, code-server, playwright-core, chromium, the .vsix);
the module runs it first: it is idempotent, a few seconds once everything is in `.tools/`, minutes on a fresh
machine. Screenshots of every step land in test-artifacts/vscode/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kimi_lsp.fake import Fault

pytestmark = pytest.mark.vscode

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup-vscode-e2e.sh"
DRIVER = Path(__file__).resolve().parent / "vscode" / "driver.mjs"
ARTIFACTS = ROOT / "test-artifacts" / "vscode"
KIMI_LSP = Path(sys.executable).parent / "kimi-lsp"
FAKE_KEY = "sk-fake-valid-key"

APP_PY = """\
def total(items):
    s = 0
    for i in items:
        s = s + i
    return s


print(total([1, 2, 3]))
"""

SHOUT_PY = """\
def greet(name):
    return "hello " + name
"""

COMMENT_PY = """\
def area(w, h):
    return w * h
"""

# The proposal tests: one file each, so every test starts from this text.
TOTAL_PY = """\
def total(xs):
    total = 0
    for x in xs:
        total += x
    return total


print(total([1, 2]))
"""
PROPOSAL_FILES = ("accept.py", "reject.py", "refine.py", "stale.py", "preview.py")

# Ghost text: the fake completes with the JSON string after `fake-completion: ` in the prompt; the test types the
# "n " that ends line 3's "return ", and the model's continuation is the ghost text.
GHOST_PY = """\
# fake-completion: "x * 2"
def double(x):
    retur
"""
CONVO_PY = """\
def double(x):
    return x * 2
"""
DOC_IMAGES = ROOT / "docs" / "images"

# kimi.actions of the workspace: one that edits (the fake uppercases the code for an "Instruction: uppercase" line)
# and one that answers in the panel.
CUSTOM_ACTIONS = [
    {"id": "shout", "title": "Shout", "prompt": "Instruction: uppercase\n\nMake this code loud.", "output": "replace"},
    {"id": "review", "title": "Review", "prompt": "Review this {language} code:\n\n{selection}", "output": "show"},
]
COMMENT_RULER = 50  # editor.rulers of the workspace: the width "Explain as Comment" sends
VISION_MODEL = "moonshot-v1-8k-vision-preview"


def _png(width: int = 3, height: int = 2) -> bytes:
    """A small valid RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = _png()

# Quiet, deterministic VS Code: no welcome page, tips, update checks, AI side bar or minimap.
USER_SETTINGS = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.disableAIFeatures": True,
    "telemetry.telemetryLevel": "off",
    "extensions.autoUpdate": False,
    "extensions.autoCheckUpdates": False,
    "editor.minimap.enabled": False,
    "security.workspace.trust.enabled": False,
    "update.mode": "none",
    # No word suggestions while the ghost-text test types: Tab must go to the inline suggestion.
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen | None) -> None:
    """End a process started with start_new_session=True and everything it spawned (its process group)."""
    if proc is None:
        return
    pgid = proc.pid  # a session leader's group id is its pid, even after it exited
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so it does not count as alive
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@dataclass
class Tools:
    node: str
    code_server: str
    playwright: str
    vsix: str

    @property
    def path_env(self) -> str:
        return f"{Path(self.node).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def tools() -> Tools:
    """Run the (idempotent) setup script and read the paths it prints."""
    started = time.monotonic()
    proc = subprocess.run(["bash", str(SETUP)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"{SETUP.name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    paths = dict(
        line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and line.split("=", 1)[0].isupper()
    )
    print(f"setup-vscode-e2e.sh: {time.monotonic() - started:.1f} s")
    return Tools(
        node=paths["NODE"],
        code_server=paths["CODE_SERVER"],
        playwright=paths["PLAYWRIGHT_NODE_PATH"],
        vsix=paths["VSIX"],
    )


@dataclass
class VSCode:
    """code-server + the Playwright driver, with the folders they use."""

    driver: subprocess.Popen
    workspace: Path
    user_data: Path
    log: Path
    steps: list[dict] = field(default_factory=list)

    def step(self, name: str, /, timeout: float = 120, **args: Any) -> dict:
        assert self.driver.stdin and self.driver.stdout
        self.driver.stdin.write(json.dumps({"step": name, **args}) + "\n")
        self.driver.stdin.flush()
        ready, _, _ = select.select([self.driver.stdout], [], [], timeout)
        if not ready:
            pytest.fail(f"driver step {name!r} gave no answer in {timeout} s\n{self.logs()}")
        line = self.driver.stdout.readline()
        if not line:
            pytest.fail(f"the driver exited during step {name!r} (code {self.driver.poll()})\n{self.logs()}")
        reply = json.loads(line)
        self.steps.append({"step": name, **reply})
        if not reply.get("ok"):
            pytest.fail(
                f"step {name!r} failed: {reply.get('error')}\nscreenshot: {reply.get('screenshot')}\n"
                f"workbench text:\n{reply.get('dom')}\n{self.logs()}"
            )
        return reply

    def logs(self) -> str:
        """code-server's own log and the extension's "Kimi" output channel (the server's stderr)."""
        parts = [f"--- code-server log (tail)\n{self.log.read_text(errors='replace')[-3000:]}"]
        for channel in sorted(self.user_data.glob("logs/**/*Kimi*.log")):
            parts.append(
                f"--- {channel.relative_to(self.user_data)} (tail)\n{channel.read_text(errors='replace')[-6000:]}"
            )
        return "\n".join(parts)


@pytest.fixture(scope="module")
def vscode(tools: Tools, fake_server, tmp_path_factory) -> Iterator[VSCode]:
    if not KIMI_LSP.exists():
        pytest.skip(f"needs the server installed next to this Python: {KIMI_LSP} (pip install -e .)")
    base = tmp_path_factory.mktemp("vscode")
    home, user_data, extensions, profile = (base / n for n in ("home", "user-data", "extensions", "chromium"))
    workspace = base / "project"
    for d in (home, user_data / "User", extensions, profile, workspace / ".vscode"):
        d.mkdir(parents=True)
    (workspace / "app.py").write_text(APP_PY)
    (workspace / "shout.py").write_text(SHOUT_PY)
    (workspace / "comment.py").write_text(COMMENT_PY)
    (workspace / "ghost.py").write_text(GHOST_PY)
    (workspace / "convo.py").write_text(CONVO_PY)
    for name in PROPOSAL_FILES:
        (workspace / name).write_text(TOTAL_PY)
    (workspace / "shots").mkdir()
    (workspace / "shots" / "dot.png").write_bytes(PNG)
    (workspace / ".vscode" / "settings.json").write_text(
        json.dumps(
            {
                "kimi.baseUrl": fake_server.base_url,
                "kimi.server.path": str(KIMI_LSP),
                "kimi.server.logLevel": "debug",
                "kimi.actions": CUSTOM_ACTIONS,
                "editor.rulers": [COMMENT_RULER],
            },
            indent=2,
        )
    )
    (user_data / "User" / "settings.json").write_text(json.dumps(USER_SETTINGS, indent=2))
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)

    env = {
        "PATH": tools.path_env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(base / "runtime"),
        "LANG": "C.UTF-8",
        "MOONSHOT_API_KEY": FAKE_KEY,
    }
    (base / "runtime").mkdir(mode=0o700)
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    install = subprocess.run(
        [tools.code_server, *dirs, "--install-extension", tools.vsix],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0 and "successfully installed" in install.stdout, install.stdout + install.stderr

    port = _free_port()
    log = base / "code-server.log"
    server = subprocess.Popen(
        [
            tools.code_server,
            *dirs,
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--auth",
            "none",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            str(workspace),
        ],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    driver = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"code-server did not come up:\n{log.read_text()}")
            time.sleep(0.2)

        driver = subprocess.Popen(
            [tools.node, str(DRIVER)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={
                **env,
                "PLAYWRIGHT_NODE_PATH": tools.playwright,
                "ARTIFACTS": str(ARTIFACTS),
                "BROWSER_PROFILE": str(profile),
            },
        )
        session = VSCode(driver=driver, workspace=workspace, user_data=user_data, log=log)
        launched = session.step("launch", url=f"http://127.0.0.1:{port}/?folder={workspace}", timeout=180)
        assert "kimi-k2.5" in launched["status"], launched
        session.step("openFile", name="app.py", expect="def total(items):")
        yield session
        session.step("close", timeout=30)
    finally:
        for channel in user_data.glob("logs/**/*Kimi*.log"):  # the "Kimi" output channel, for CI post-mortems
            shutil.copy(channel, ARTIFACTS / "kimi-output-channel.log")
        _kill_group(driver)
        _kill_group(server)


def _chat_models(fake) -> list[str | None]:
    return [r.model for r in fake.chat_requests()]


def test_refactor_code_action_edits_the_document(vscode: VSCode, fake):
    menu = vscode.step("codeAction", fromLine=2, toLine=5, title="Kimi: Refactor", screenshot="02-refactor")
    assert {"Kimi: Refactor", "Kimi: Fix", "Kimi: Add docs"} <= set(menu["titles"]), menu["titles"]
    # A proposal first (one change: the fake appends a comment line); nothing lands until it is accepted.
    shown = vscode.step("proposal", lens="Accept", diff="# refactored by fake-kimi", screenshot="03-refactor-proposal")
    assert "# refactored by fake-kimi" not in shown["text"], shown["text"]
    assert shown["ghosts"] == ["+ # refactored by fake-kimi"], shown["ghosts"]
    vscode.step("clickCodeLens", title="Accept", exact=True)
    edited = vscode.step("waitForEdit", expect="# refactored by fake-kimi", screenshot="03-refactored")
    text = edited["text"]
    assert "def total(items):" in text and "print(total([1, 2, 3]))" in text, text
    # The refactored block replaced lines 2-5 in place: the function header and the call are untouched.
    assert text.index("def total(items):") < text.index("# refactored by fake-kimi") < text.index("print(total("), text
    assert _chat_models(fake) == ["kimi-k2.5"]


def test_editor_context_menu_has_the_kimi_submenu(vscode: VSCode):
    menu = vscode.step("contextMenu", line=1, submenu="Kimi", screenshot="03b-context-menu")
    for title in (
        "Explain Selection",
        "Ask Kimi…",
        "Refactor Selection…",
        "Fix Selection",
        "Add Docs to Selection",
        "Explain as Comment",
        "Run Custom Action…",
        "Ask About Images…",
    ):
        assert title in menu["items"], menu["items"]


def test_explain_streams_into_the_side_panel(vscode: VSCode, fake):
    vscode.step("command", title="Kimi: Explain Selection", fromLine=1, toLine=5)
    panel = vscode.step("waitForPanel", expect="fake-kimi explains", screenshot="04-explain-panel")
    assert "Kimi: Explain" in panel["text"] and "app.py:1-5" in panel["text"], panel["text"]
    assert "(model kimi-k2.5)" in panel["text"], panel["text"]
    assert _chat_models(fake) == ["kimi-k2.5"]
    # the footer ends the answer with the server's spent line: tokens and the cost in USD
    footer = vscode.step("waitForPanel", expect=" tokens · $0.0")
    assert re.search(r"[\d,]+ tokens( \([\d,]+ cached\))? · \$0\.\d{4}", footer["text"]), footer["text"]


def test_rejected_key_shows_a_diagnostic_and_the_quick_fix_takes_a_new_key(vscode: VSCode, fake):
    fake.script("unauthorized")
    vscode.step("command", title="Kimi: Explain Selection", fromLine=8, toLine=8)
    problems = vscode.step("problems", expect="rejected the API key", screenshot="05-unauthorized-problem")
    assert "kimi" in problems["text"], problems["text"]

    # The diagnostic's preferred quick fix runs the client-side command kimi.enterApiKey: a password box.
    prompt = vscode.step(
        "enterKeyViaQuickFix", line=8, title="Kimi: Set API key", key=FAKE_KEY, screenshot="06-enter-key"
    )
    assert prompt["inputType"] == "password", prompt
    cleared = vscode.step("problems", absent="rejected the API key", screenshot="07-key-accepted")
    assert "rejected the API key" not in cleared["text"]
    # The server verified the key against the fake with GET /models.
    assert any(
        r.path == "/v1/models" and r.headers.get("authorization") == f"Bearer {FAKE_KEY}" for r in fake.requests
    ), [r.path for r in fake.requests]


def test_select_model_from_the_status_bar_switches_the_model(vscode: VSCode, fake):
    picked = vscode.step("selectModel", model="moonshot-v1-32k", target="Workspace", screenshot="08-model-selected")
    rows = {r["label"]: r["description"] for r in picked["rows"]}
    details = {r["label"]: r["aria"] for r in picked["rows"]}  # label, description, detail
    # what the model is good for as the description; window, capabilities and the USD price as the detail
    assert rows["kimi-k2.5"].startswith("(current) · the default"), rows
    assert "256K context · vision · thinking (switchable)" in details["kimi-k2.5"], details
    assert "$0.60 / $3.00 per M in/out, $0.10 cached" in details["kimi-k2.5"], details
    assert rows["moonshot-v1-32k"].startswith("older generation"), rows
    assert "32K context" in details["moonshot-v1-32k"], details
    assert [t["label"] for t in picked["targets"]] == ["Workspace", "User"], picked["targets"]
    assert "moonshot-v1-32k · international" in picked["status"], picked["status"]
    settings = json.loads((vscode.workspace / ".vscode" / "settings.json").read_text())
    assert settings["kimi.model"] == "moonshot-v1-32k", settings

    fake.reset()
    vscode.step("command", title="Kimi: Explain Selection", fromLine=1, toLine=2)
    vscode.step("waitForPanel", expect="(model moonshot-v1-32k)", screenshot="09-explain-with-new-model")
    assert _chat_models(fake) == ["moonshot-v1-32k"]


def test_the_kimi_output_channel_carries_the_server_log(vscode: VSCode):
    channels = sorted(vscode.user_data.glob("logs/**/*Kimi*.log"))
    assert channels, "no Kimi output channel log"
    text = channels[-1].read_text(errors="replace")
    assert f"starting {KIMI_LSP} (from setting), log level debug" in text, text[-3000:]
    # kimi-lsp's own log lines ("<time> LEVEL logger: message") from its stderr, at the level asked for.
    assert " DEBUG " in text and "kimi_lsp" in text, text[-3000:]


def test_explain_as_comment_writes_the_explanation_above_at_the_ruler_width(vscode: VSCode, fake):
    vscode.step("openFile", name="comment.py", expect="def area(w, h):")
    vscode.step("command", title="Kimi: Explain as Comment", fromLine=1, toLine=2)
    vscode.step("proposal", lens="Accept", screenshot="10-explain-as-comment-proposal")
    vscode.step("clickCodeLens", title="Accept", exact=True)
    edited = vscode.step("waitForEdit", expect="fake-kimi", screenshot="10-explain-as-comment")
    lines = edited["text"].splitlines()
    comment = [line for line in lines if line.startswith("#")]
    assert comment and "fake-kimi" in " ".join(comment), edited["text"]
    # Above the code, which is left as it was.
    assert lines.index(comment[0]) < lines.index("def area(w, h):"), edited["text"]
    assert "    return w * h" in lines, edited["text"]
    # Wrapped at the editor's ruler (the server's default is 100; the explanation's first sentence is longer).
    assert len(comment) >= 2 and all(len(line) <= COMMENT_RULER for line in comment), comment
    assert len(fake.chat_requests()) == 1
    # Not an answer for the panel: the comment request never shows there.
    entries = vscode.step("panelEntries")["entries"]
    assert not any("comment.py" in e["text"] for e in entries), entries


def test_run_custom_action_from_the_palette(vscode: VSCode, fake):
    vscode.step("openFile", name="shout.py", expect="def greet(name):")
    # An action that answers in the panel.
    vscode.step("command", title="Kimi: Run Custom Action…", fromLine=1, toLine=2)
    picked = vscode.step("pickQuickPick", labels=["Review"], screenshot="11-custom-actions")
    rows = {r["label"]: r["description"] for r in picked["rows"]}
    assert rows == {"Shout": "replaces the selection", "Review": "answers in the Kimi panel"}, picked["rows"]
    panel = vscode.step("waitForPanel", expect="The first line is def greet(name):", screenshot="12-custom-show")
    assert "Kimi: Review · shout.py:1-2" in panel["text"], panel["text"]
    assert panel["text"].index("Kimi: Review") < panel["text"].index("def greet(name):"), panel["text"]

    # An action that edits: the fake uppercases the selected code, which replaces the selection.
    vscode.step("command", title="Kimi: Run Custom Action…", fromLine=1, toLine=2)
    vscode.step("pickQuickPick", labels=["Shout"], screenshot="13-custom-replace")
    vscode.step("proposal", lens="Accept", diff="DEF GREET(NAME):", screenshot="13-custom-proposal")
    vscode.step("clickCodeLens", title="Accept", exact=True)
    edited = vscode.step("waitForEdit", expect="DEF GREET(NAME):", screenshot="13-custom-replaced")
    assert 'RETURN "HELLO " + NAME' in edited["text"], edited["text"]
    assert "def greet" not in edited["text"], edited["text"]
    requests = fake.chat_requests()
    assert len(requests) == 2, requests
    assert "Review this python code" in json.dumps(requests[0].body), requests[0].body
    assert "Make this code loud." in json.dumps(requests[1].body), requests[1].body


def test_code_lens_show_puts_the_explanation_in_the_panel_and_clear_removes_the_lenses(vscode: VSCode, fake):
    lens = "Kimi: explained · hover to read"
    vscode.step("openFile", name="app.py", expect="def total(items):")
    # Earlier tests explained parts of app.py: clear those, so one explanation is left.
    vscode.step("command", title="Kimi: Clear Explanations")
    vscode.step("codeLenses", absent=lens)
    vscode.step("command", title="Kimi: Explain Selection", fromLine=1, toLine=2)
    shown = vscode.step("codeLenses", expect=lens, screenshot="14-code-lens")
    assert shown["lenses"].count(lens) == 1, shown["lenses"]
    before = {e["id"] for e in vscode.step("panelEntries")["entries"]}
    vscode.step("clickCodeLens", title=lens, screenshot="15-code-lens-clicked")

    deadline = time.monotonic() + 30
    while True:
        entries = vscode.step("panelEntries")["entries"]
        if entries and entries[0]["id"] not in before:
            break
        assert time.monotonic() < deadline, f"the code lens did not show the explanation in the panel: {entries}"
        time.sleep(0.3)
    top = entries[0]
    assert top["id"].startswith("explanation-"), top
    assert "fake-kimi explains 2 lines" in top["text"] and "Kimi: Explain · app.py" in top["text"], top
    assert len(fake.chat_requests()) == 1  # shown from the server's memory, not asked again

    vscode.step("command", title="Kimi: Clear Explanations")
    cleared = vscode.step("codeLenses", absent=lens, screenshot="16-explanations-cleared")
    assert lens not in cleared["lenses"], cleared["lenses"]


def test_ask_about_images_sends_the_picked_png(vscode: VSCode, fake):
    settings_file = vscode.workspace / ".vscode" / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings["kimi.model"] = VISION_MODEL
    settings_file.write_text(json.dumps(settings, indent=2))
    vscode.step("waitForStatus", expect=VISION_MODEL)

    vscode.step("command", title="Kimi: Ask About Images…")
    picked = vscode.step("pickQuickPick", labels=["shots/dot.png"], many=True, screenshot="17-images")
    assert [r["label"] for r in picked["rows"]] == ["shots/dot.png"], picked["rows"]
    assert [r["label"] for r in picked["ticked"] if r["checked"]] == ["shots/dot.png"], picked["ticked"]
    asked = vscode.step("typeInput", prompt="shots/dot.png", text="What colour is this?", screenshot="18-question")
    assert "Your question about shots/dot.png" in asked["message"], asked
    # The fake's vision reply names the MIME type, size and hash of the bytes it got.
    label = f"img1=image/png,{len(PNG)}B,sha={hashlib.sha256(PNG).hexdigest()[:8]}"
    panel = vscode.step("waitForPanel", expect=f"fake-kimi answers about {label}", screenshot="19-images-answer")
    assert VISION_MODEL in panel["text"], panel["text"]
    requests = fake.chat_requests()
    assert [r.model for r in requests] == [VISION_MODEL], requests
    assert "What colour is this?" in json.dumps(requests[0].body)


# --- proposals: an edit is reviewed in the file before it lands -----------------------------------------------------

ACC_PY = TOTAL_PY.replace("total", "acc").replace("print(acc", "print(total")
TOTAL_LINES = TOTAL_PY.split("\n")  # as the editor shows them: the final line end starts an empty last line
ACC_LINES = ACC_PY.split("\n")


def _refactor(vscode: VSCode, name: str, instruction: str, screenshot: str) -> dict:
    vscode.step("openFile", name=name, expect="def total(xs):")
    vscode.step("command", title="Kimi: Refactor Selection…", fromLine=1, toLine=5)
    vscode.step("typeInput", prompt="How should Kimi change the selected code", text=instruction)
    return vscode.step("proposal", lens="Accept All", diff="def acc(xs):", screenshot=screenshot)


def test_a_refactor_is_shown_as_a_proposal_and_one_click_accepts_it(vscode: VSCode, fake):
    vscode.step("hidePanel")  # for the docs' screenshot: no Problems panel (from an earlier test), no side bar
    vscode.step("keys", keys=["Control+b"])
    try:
        shown = _refactor(vscode, "accept.py", "rename total to acc", "20-proposal")
    finally:
        vscode.step("keys", keys=["Control+b"])
    shutil.copy(shown["screenshot"], DOC_IMAGES / "vscode-proposal.png")
    # Two changes (lines 1-2 and 4-5, line 3 is the same): a header with the whole proposal's actions, a row each.
    lenses = shown["lenses"]
    for title in ("Kimi: Refactor", "Accept All", "Reject All", "Refine…", "Change 1/2:", "Change 2/2:"):
        assert title in lenses, lenses
    assert lenses.count("Accept") == 2 and lenses.count("Reject") == 2, lenses
    assert "Diff" not in lenses, lenses  # offered only while the diff beside is closed
    # Nothing changed yet: the file is as it was, the new code shows beside it (ghost text) and in the diff.
    assert shown["lines"] == TOTAL_LINES, shown["text"]
    assert not shown["dirty"], shown
    assert shown["ghosts"] == ["→ def acc(xs):", "→ acc = 0", "→ acc += x", "→ return acc"], shown["ghosts"]
    assert shown["marks"] >= 4, shown  # a gutter mark on each of the four removed lines
    assert "def acc(xs):" in shown["diff"]["modified"] and "return acc" in shown["diff"]["modified"], shown["diff"]
    assert any("accept.py ↔ Kimi: Refactor (proposal)" in t for t in shown["tabs"]), shown["tabs"]
    assert len(fake.chat_requests()) == 1

    vscode.step("clickCodeLens", title="Accept All", exact=True)
    edited = vscode.step("waitForEdit", expect="def acc(xs):", screenshot="21-proposal-accepted")
    assert edited["lines"] == ACC_LINES, edited["text"]
    done = vscode.step("proposal", absent="Accept All", noDiff=True, screenshot="21-proposal-gone")
    assert not any(t in done["lenses"] for t in ("Accept", "Reject", "Refine…")), done["lenses"]
    assert not any("(proposal)" in t for t in done["tabs"]), done["tabs"]
    assert done["marks"] == 0, done


def test_reject_leaves_the_file_byte_identical(vscode: VSCode):
    _refactor(vscode, "reject.py", "rename total to acc", "22-reject-proposal")
    vscode.step("clickCodeLens", title="Reject All", exact=True)
    done = vscode.step("proposal", absent="Reject All", noDiff=True, screenshot="23-rejected")
    assert done["lines"] == TOTAL_LINES, done["text"]
    assert not done["dirty"], done  # VS Code's text is the file's: nothing was edited, not even undone
    assert (vscode.workspace / "reject.py").read_text() == TOTAL_PY


def test_refine_asks_for_an_instruction_and_shows_the_new_version(vscode: VSCode, fake):
    _refactor(vscode, "refine.py", "rename total to acc", "24-refine-proposal")
    vscode.step("clickCodeLens", title="Refine…", exact=True)
    asked = vscode.step(
        "typeInput", prompt="How should Kimi change its proposal", text="uppercase", screenshot="25-refine"
    )
    assert "How should Kimi change its proposal" in asked["message"], asked
    refined = vscode.step("proposal", lens="Accept", diff="DEF ACC(XS):", screenshot="26-refined")
    shutil.copy(refined["screenshot"], DOC_IMAGES / "vscode-proposal-refined.png")
    assert "→ DEF ACC(XS):" in refined["ghosts"], refined["ghosts"]
    assert refined["lines"] == TOTAL_LINES, refined["text"]
    # A follow-up turn: the model saw its own first answer and the instruction.
    body = json.dumps(fake.chat_requests()[-1].body)
    assert "def acc(xs):" in body and "Instruction: uppercase" in body, body[-2000:]

    # The keyboard: Alt+F5 goes to the change, Ctrl+Alt+Y accepts it.
    moved = vscode.step("keys", line=8, keys=["Alt+F5"], screenshot="27-next-change")
    assert moved["line"] == 1, moved
    vscode.step("keys", keys=["Control+Alt+y"], screenshot="28-accept-key")
    edited = vscode.step("waitForEdit", expect="DEF ACC(XS):", screenshot="28-refined-accepted")
    assert "RETURN ACC" in edited["text"] and "print(total([1, 2]))" in edited["text"], edited["text"]
    vscode.step("proposal", absent="Accept", noDiff=True)


def test_typing_inside_a_change_makes_the_proposal_stale(vscode: VSCode):
    _refactor(vscode, "stale.py", "rename total to acc", "29-stale-proposal")
    vscode.step("keys", line=2, keys=["End"], type="  # mine")  # inside the first change
    stale = vscode.step("notification", expect="Kimi: Refactor (stale.py)", click="Reject", screenshot="30-stale")
    assert stale["buttons"] == ["Reject", "Dismiss"], stale
    assert "it can no longer be applied. Run the action again for a new proposal." in stale["text"], stale["text"]
    vscode.step("keys", keys=["Escape"])  # no inline completion's ghost text in the lines read below
    done = vscode.step("proposal", absent="Accept All", noDiff=True, screenshot="31-stale-rejected")
    assert not any(t in done["lenses"] for t in ("Accept", "Reject", "Refine…")), done["lenses"]
    assert done["marks"] == 0 and done["ghosts"] == [], done
    # The user's typing stays; the proposal never landed.
    assert done["lines"][:2] == ["def total(xs):", "    total = 0  # mine"], done["lines"]


def test_preview_edits_always_opens_the_refactor_preview(vscode: VSCode):
    settings_file = vscode.workspace / ".vscode" / "settings.json"
    before = settings_file.read_text()
    settings_file.write_text(json.dumps({**json.loads(before), "kimi.previewEdits": "always"}, indent=2))
    try:
        time.sleep(2)  # the server pulls the new settings after didChangeConfiguration
        vscode.step("openFile", name="preview.py", expect="def total(xs):")
        vscode.step("command", title="Kimi: Refactor Selection…", fromLine=1, toLine=5)
        vscode.step("typeInput", prompt="How should Kimi change the selected code", text="rename total to acc")
        # VS Code's Refactor Preview, where a change that needs confirmation starts unticked (VS Code's rule; an
        # extension cannot tick it, see kimi.previewEdits): the driver ticks it and applies, as a user would.
        edited = vscode.step("waitForEdit", expect="def acc(xs):", screenshot="32-preview-always")
        assert edited["previewed"] and edited["preview"]["unticked"] >= 1, edited
        assert edited["lines"] == ACC_LINES, edited["text"]
    finally:
        settings_file.write_text(before)


# --- ghost text and conversations -----------------------------------------------------------------------------------


def _partial_requests(fake) -> list:
    return [r for r in fake.chat_requests() if r.body["messages"][-1].get("partial")]


def test_typing_shows_ghost_text_and_tab_accepts_it(vscode: VSCode, fake):
    vscode.step("openFile", name="ghost.py", expect="def double(x):")
    item = vscode.step("completionItem", expect="Kimi ghost text")
    assert item["text"].endswith("Kimi ghost text"), item  # on: no "paused", no snooze
    vscode.step("hidePanel")  # for the docs' screenshot
    vscode.step("keys", keys=["Control+b"])
    try:
        shown = vscode.step("ghostText", line=3, type="n ", expect="x * 2", accept=True, screenshot="40-ghost-text")
    finally:
        vscode.step("keys", keys=["Control+b"])
    shutil.copy(shown["shown"], DOC_IMAGES / "vscode-ghost-text.png")
    assert shown["ghost"] == "x * 2", shown
    assert shown["accepted"][:3] == ['# fake-completion: "x * 2"', "def double(x):", "    return x * 2"], shown
    # Partial mode: the line before the cursor starts the answer (after "n", or "n ": typing through is cached).
    partial = _partial_requests(fake)
    last = partial[-1].body["messages"][-1] if partial else {}
    assert last.get("partial") is True and last["content"].startswith("    return"), last
    assert partial[-1].model == "kimi-k2.6", partial[-1].body

    # Snooze from the command palette: the item counts down; its click offers to resume.
    vscode.step("command", title="Kimi: Snooze Ghost Text for 30 Minutes")
    snoozed = vscode.step("completionItem", expect="30 min", screenshot="41-ghost-text-snoozed")
    assert "Kimi ghost text 30 min" in snoozed["text"], snoozed
    vscode.step("completionItem", click=True)
    vscode.step("pickQuickPick", labels=["Resume Now"], screenshot="42-ghost-text-menu")
    resumed = vscode.step("completionItem", expect="Kimi ghost text", absent="min")
    assert "min" not in resumed["text"], resumed


def test_a_follow_up_typed_in_the_panel_continues_the_conversation(vscode: VSCode, fake):
    vscode.step("openFile", name="convo.py", expect="def double(x):")
    vscode.step("command", title="Kimi: Explain Selection", fromLine=1, toLine=2)
    vscode.step("waitForPanel", expect="fake-kimi explains 2 lines")
    # #file: completes workspace paths; Tab takes the suggestion.
    typed = vscode.step(
        "panelFollowUp",
        contains="convo.py",
        suggest="#file:sho",
        expectSuggestion="#file:shout.py",
        text="and why not a dict?",
        screenshot="43-follow-up",
    )
    assert "#file:shout.py" in typed["suggestions"], typed
    assert typed["afterSuggestion"] == "#file:shout.py ", typed
    vscode.step("hidePanel")
    vscode.step("keys", keys=["Control+b"])
    try:
        answered = vscode.step("waitForPanel", expect="fake-kimi answers: and why not a dict?", screenshot="44-thread")
    finally:
        vscode.step("keys", keys=["Control+b"])
    shutil.copy(answered["screenshot"], DOC_IMAGES / "vscode-conversation.png")
    top = vscode.step("panelEntries")["entries"][0]
    assert "Kimi: Explain · convo.py:1-2" in top["text"], top
    assert len(top["turns"]) == 2, top["turns"]
    assert "fake-kimi explains 2 lines" in top["turns"][0], top["turns"]
    assert "You and why not a dict?" in top["turns"][1], top["turns"]
    assert top["turns"][1].index("You and why not a dict?") < top["turns"][1].index("fake-kimi answers"), top
    assert top["followUp"], top  # the box for the next question is back
    # The follow-up request carried the earlier turn: the first request's messages, its answer, the question.
    one, two = (r.body["messages"] for r in fake.chat_requests())
    assert two[: len(one)] == one, two
    assert two[len(one)]["role"] == "assistant" and "explains 2 lines" in two[len(one)]["content"], two
    assert two[-1] == {"role": "user", "content": "Question: and why not a dict?"}, two[-1]

    # A code block of an answer: Apply proposes it in place of the code the conversation started from.
    fake.script(Fault("reply", content="Like this:\n```python\ndef double(y):\n    return y * 2\n```\n"))
    vscode.step("panelFollowUp", contains="convo.py", text="rename x to y")
    vscode.step("waitForPanel", expect="Like this:")
    top = vscode.step("panelEntries")["entries"][0]
    assert len(top["turns"]) == 3 and top["applyButtons"] == 1, top
    vscode.step("panelApply", index=0, screenshot="45-apply")
    proposed = vscode.step("proposal", lens="Accept", diff="def double(y):", screenshot="46-applied-as-proposal")
    assert proposed["lines"][:2] == ["def double(x):", "    return x * 2"], proposed["lines"]  # not applied yet
    vscode.step("clickCodeLens", title="Reject", exact=True)
    vscode.step("proposal", absent="Accept", noDiff=True)
    assert (vscode.workspace / "convo.py").read_text() == CONVO_PY

    # The conversation is stored: Open Conversation lists it with its three turns.
    vscode.step("command", title="Kimi: Open Conversation…")
    picked = vscode.step("pickQuickPick", labels=["Explain: convo.py"], screenshot="47-open-conversation")
    rows = {r["label"]: r["description"] for r in picked["rows"]}
    assert rows["Explain: convo.py"].startswith("3 turns · "), rows
    vscode.step("waitForPanel", expect="rename x to y", screenshot="48-conversation-opened")
    again = vscode.step("panelEntries")["entries"][0]
    assert len(again["turns"]) == 3 and "rename x to y" in again["text"], again
