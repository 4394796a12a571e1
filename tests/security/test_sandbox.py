"""The tools' sandbox under attack (issue #11): secret-looking names in any case, symlinks out of the workspace or
onto secrets, files swapped after the check, pipes, a catastrophic regex, floods of tool calls, tool work past the
request's deadline, and error texts that would name the workspace's absolute path."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest

from harness import FAKE_KEY, base, editor
from kimi_lsp import errors, redact
from kimi_lsp.core.actions import BUILTIN_ACTIONS
from kimi_lsp.core.pipeline import Job, run_job
from kimi_lsp.core.tools import Budget, Sandbox, ToolBox, ToolError, open_regular
from kimi_lsp.kimi.http import ClientPool, KimiClient
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.kimi.sse import ToolCall
from kimi_lsp.settings import Settings

MARK = "TOPSECRET"  # in every file that must never reach the model (not key-shaped: redaction would not hide it)

# Workspace-relative names the tools must refuse, in several cases: a case-insensitive file system opens `.env`
# for `.ENV` and `.git/config` for `.GIT/config`.
SECRETS = [
    ".env",
    ".ENV",
    ".Env.local",
    ".envrc",
    ".env-production",
    ".env_local",
    ".env~",
    "prod.env",
    "deploy/.env.prod",
    "server.KEY",
    "cert.PEM",
    "store.P12",
    "ID_RSA",
    "id_ed25519",
    "Id_Ecdsa.pub",
    ".bashrc",
    ".BASHRC",
    ".zshrc",
    ".profile",
    ".bash_profile",
    ".zprofile",
    ".bash_history",
    ".zsh_history",
    ".python_history",
    ".config/fish/config.fish",
    ".local/share/fish/fish_history",
    ".aws/credentials",
    ".AWS/Config",
    ".ssh/config",
    ".ssh/known_hosts",
    "user/.SSH/id_work",
    ".kube/config",
    ".docker/config.json",
    "home/.Docker/Config.json",
    ".config/gcloud/credentials.db",
    ".azure/accessTokens.json",
    ".config/gh/hosts.yml",
    ".terraformrc",
    "prod.tfvars",
    "state/terraform.tfstate",
    ".htpasswd",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "Credentials.json",
    "secrets.yaml",
    ".git/config",
    ".GIT/config",
    ".Git/HEAD",
    ".hg/hgrc",
    ".svn/entries",
]


def run(box: ToolBox, name: str, **args) -> str:
    return asyncio.run(box.run(ToolCall(id=f"{name}:0", name=name, arguments=json.dumps(args))))


@pytest.fixture
def ws(tmp_path):
    """A workspace with harmless code, every secret of the table, and links planted the way a cloned repo can."""
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "ok.py").write_text("def visible():\n    return 1\n")
    for i, name in enumerate(SECRETS):
        if (root / name).exists():  # a name that differs only in case is another file here (case-sensitive fs)
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{MARK}-{i} = 'do not send'\n")
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text(f"{MARK}_generated = 1\n")
    (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("local-notes.txt\n")
    (root / "local-notes.txt").write_text(f"{MARK}_excluded\n")
    (root / "private").mkdir()
    (root / "private" / "plan.md").write_text(f"{MARK}_denied\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(f"export MOONSHOT_API_KEY={MARK}_bashrc\n")
    (home / "plain.txt").write_text(f"{MARK}_outside\n")
    links = {
        "notes.txt": home / ".bashrc",  # a file link out of the root
        "readme-link.md": home / "plain.txt",  # ... to an ordinary-looking file
        "env.txt": root / ".env",  # a link onto a secret inside the root
        "gen.txt": root / "build" / "out.py",  # ... onto a .gitignored file
        "cfg.txt": root / ".git" / "config",  # ... into version-control metadata
        "config.env": root / "src" / "ok.py",  # a secret-looking name over a harmless file
        "ext": home,  # a directory link out of the root
        "keys": root / ".ssh",  # a directory link onto a secret folder
        "loop": root / "loop",  # a link to itself
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


# -- secret names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SECRETS)
def test_secret_names_are_refused_by_read_file(ws, name):
    box = ToolBox(Sandbox([ws]))
    result = run(box, "read_file", path=name)
    assert result.startswith("error:") and MARK not in result, result
    assert run(box, "get_document_symbols", path=name).startswith("error:")


@pytest.mark.parametrize("name", SECRETS)
def test_secret_names_are_not_listed_or_searched(ws, name):
    box = ToolBox(Sandbox([ws]))
    assert run(box, "list_files", glob=name) == "no matching files"
    assert MARK not in run(box, "search_text", pattern=MARK, glob=name)


def test_whole_workspace_list_and_search_show_no_secret(ws):
    box = ToolBox(Sandbox([ws], deny=("Private/*",)))
    listed = run(box, "list_files").splitlines()
    assert listed == [".gitignore", "src/ok.py"]  # every other file is a secret, ignored, denied or a link
    assert run(box, "search_text", pattern=MARK) == "no matches"
    assert run(box, "search_text", pattern="visible") == "src/ok.py:1: def visible():"


@pytest.mark.parametrize(
    "path,words",
    [
        ("local-notes.txt", ".gitignore"),  # .git/info/exclude is honoured
        ("BUILD/out.py", ".gitignore"),  # ignore rules are case-folded
        ("PRIVATE/plan.md", "kimi.toolDeny"),
        ("private/plan.md", "kimi.toolDeny"),
    ],
)
def test_ignore_and_deny_rules_fold_case(ws, path, words):
    (ws / "BUILD").mkdir(exist_ok=True)
    (ws / "BUILD" / "out.py").write_text(f"{MARK}\n")
    (ws / "PRIVATE").mkdir(exist_ok=True)
    (ws / "PRIVATE" / "plan.md").write_text(f"{MARK}\n")
    with pytest.raises(ToolError) as info:
        Sandbox([ws], deny=("private/*",)).resolve(path)
    assert words in str(info.value)


# -- symlinks and swapped files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,words",
    [
        ("notes.txt", "outside the workspace"),
        ("readme-link.md", "outside the workspace"),
        ("env.txt", "secret"),
        ("gen.txt", ".gitignore"),
        ("cfg.txt", "version-control"),
        ("config.env", "secret"),
        ("ext/plain.txt", "outside the workspace"),
        ("ext/.bashrc", "outside the workspace"),
        ("keys/config", "secret"),
        ("loop", "link"),
    ],
)
def test_links_are_resolved_and_checked(ws, path, words):
    box = ToolBox(Sandbox([ws]))
    result = run(box, "read_file", path=path)
    assert result.startswith("error:") and words in result and MARK not in result, result


def test_search_and_list_do_not_follow_links(ws):
    """The finding: search_text opened `notes.txt -> ~/.bashrc` because walk checked only the link's own name."""
    box = ToolBox(Sandbox([ws], deny=("private/*",)))
    for glob in ("**/*", "*.txt", "notes.txt", "ext/*", "keys/*", "*.md", "*.env"):
        assert MARK not in run(box, "search_text", pattern=MARK, glob=glob), glob
        assert MARK not in run(box, "search_text", pattern="MOONSHOT_API_KEY", glob=glob), glob
        listed = run(box, "list_files", glob=glob)
        assert not any(name in listed for name in ("notes.txt", "plain.txt", ".bashrc", "env.txt", "gen.txt")), listed


def test_link_inside_the_root_to_an_allowed_file_is_read_once(ws):
    os.symlink(ws / "src" / "ok.py", ws / "alias.py")
    box = ToolBox(Sandbox([ws]))
    assert run(box, "read_file", path="alias.py").startswith("src/ok.py (lines 1-2 of 2)")
    assert run(box, "search_text", pattern="visible").splitlines() == ["src/ok.py:1: def visible():"]


def test_file_replaced_after_the_check_is_refused(ws):
    sandbox = Sandbox([ws])
    real = sandbox.resolve("src/ok.py")
    checked = os.lstat(real)
    (ws / "src" / "other.py").write_text(f"{MARK}\n")
    os.replace(ws / "src" / "other.py", real)  # same name, another inode
    with pytest.raises(ToolError, match="changed"):
        open_regular(real, checked, "src/ok.py")


def test_link_swapped_in_after_the_check_is_not_followed(ws, tmp_path):
    sandbox = Sandbox([ws])
    real = sandbox.resolve("src/ok.py")
    checked = os.lstat(real)
    real.unlink()
    os.symlink(tmp_path / "home" / ".bashrc", real)
    with pytest.raises(ToolError):
        open_regular(real, checked, "src/ok.py")
    with pytest.raises(ToolError, match="outside the workspace"):
        sandbox.read_text(real)  # the read checks again and opens only what it checked


def test_directory_swapped_for_a_link_after_the_check(ws, tmp_path):
    sandbox = Sandbox([ws])
    real = sandbox.resolve("src/ok.py")
    checked = os.lstat(real)
    (ws / "src").rename(ws / "src-old")
    (tmp_path / "home" / "ok.py").write_text(f"{MARK}\n")
    os.symlink(tmp_path / "home", ws / "src")
    with pytest.raises(ToolError, match="changed"):
        open_regular(real, checked, "src/ok.py")  # the link is followed mid-path, but the inode is not the checked one
    with pytest.raises(ToolError, match="outside the workspace"):
        sandbox.read_text(real)


# -- pipes, devices ----------------------------------------------------------------------------------------------


def _finishes(fn, seconds: float, release: list[Path]) -> tuple[bool, object]:
    """Runs fn in a thread; a reader stuck on a FIFO is released afterwards so the test cannot hang the suite."""
    out: list = []

    def target() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    done = not worker.is_alive()
    for fifo in release:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    worker.join(2)
    return done, out[0] if out else None


def test_fifo_is_refused_fast(ws):
    os.mkfifo(ws / "pipe.png")
    os.mkfifo(ws / "pipe.txt")
    sandbox = Sandbox([ws])
    done, result = _finishes(lambda: sandbox.read_bytes(sandbox.resolve("pipe.png"), 10_000), 1.0, [ws / "pipe.png"])
    assert done and isinstance(result, ToolError) and "regular file" in str(result), result
    box = ToolBox(sandbox)
    done, result = _finishes(lambda: run(box, "read_file", path="pipe.txt"), 1.0, [ws / "pipe.txt"])
    assert done and result.startswith("error:") and "regular file" in result, result
    done, result = _finishes(lambda: run(box, "search_text", pattern="x"), 1.0, [ws / "pipe.txt"])
    assert done and result == "no matches", result
    assert "pipe" not in run(box, "list_files")


def test_gitignore_that_is_a_fifo_does_not_hang(ws):
    (ws / "src" / ".gitignore").unlink(missing_ok=True)
    os.mkfifo(ws / "src" / ".gitignore")
    sandbox = Sandbox([ws])
    done, result = _finishes(lambda: sandbox.resolve("src/ok.py"), 1.0, [ws / "src" / ".gitignore"])
    assert done and result == ws / "src" / "ok.py", result


async def test_fifo_image_is_refused_fast_end_to_end(fake, ws):
    os.mkfifo(ws / "shot.png")
    async with editor("neovim", ws, base(fake)) as ed:
        try:
            began = time.monotonic()
            r = await ed.command("kimi.ask", {"prompt": "look", "images": ["shot.png"]}, timeout=5)
            assert time.monotonic() - began < 3
            assert r["error"]["code"] == "refused" and "regular file" in r["error"]["message"], r
            assert fake.requests == []
        finally:
            try:
                os.close(os.open(ws / "shot.png", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


# -- hostile patterns and bounded work ---------------------------------------------------------------------------


def test_catastrophic_regex_returns_within_a_second(ws):
    (ws / "src" / "long.txt").write_text("a" * 16 + "\n")  # Python's re needs ~20 s here, holding the GIL
    box = ToolBox(Sandbox([ws]))
    began = time.monotonic()
    done, result = _finishes(lambda: run(box, "search_text", pattern="(.*.*)*!"), 1.0, [])
    assert done and result == "no matches", result
    assert time.monotonic() - began < 1.5


@pytest.mark.parametrize(
    "pattern,expected",
    [
        ("(?=look)ahead", "src/odd.txt:1: x = '(?=look)ahead'"),  # RE2 has no look-ahead: searched literally
        ("(a)\\1", "src/odd.txt:2: y = '(a)\\1'"),  # ... nor back-references
        ("[", "src/odd.txt:3: z = '['"),  # not a regex at all
        ("VIS.BLE", "no matches"),  # a real regex, case-sensitive as before
        ("vis.ble", "src/ok.py:1: def visible():"),
    ],
)
def test_patterns_re2_cannot_run_are_searched_literally(ws, pattern, expected):
    (ws / "src" / "odd.txt").write_text("x = '(?=look)ahead'\ny = '(a)\\1'\nz = '['\n")
    box = ToolBox(Sandbox([ws]))
    assert run(box, "search_text", pattern=pattern) == expected


def test_walk_stops_at_its_budget(ws):
    for i in range(30):
        (ws / "src" / f"f{i:02}.py").write_text("pass\n")
    sandbox = Sandbox([ws])
    assert len(list(sandbox.walk("**/*.py", Budget(files=5)))) <= 5
    stopped = Budget()
    stopped.stop.set()  # the request was cancelled
    assert list(sandbox.walk("**/*.py", stopped)) == []
    late = Budget(deadline=time.monotonic() - 1)
    assert list(sandbox.walk("**/*.py", late)) == [] and late.reason
    box = ToolBox(sandbox)
    result = asyncio.run(
        box.run(ToolCall(id="s:0", name="search_text", arguments='{"pattern": "pass"}'), deadline=time.monotonic() - 1)
    )
    assert "stopped" in result, result


# -- what a tool result may contain ------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["read_file", "get_diagnostics", "get_document_symbols"])
def test_error_results_name_no_absolute_path(ws, tool):
    box = ToolBox(Sandbox([ws]))
    for path in ("a" * 300, "src/" + "b" * 300 + ".py"):  # ENAMETOOLONG: the OS error names the whole path
        result = run(box, tool, path=path)
        assert result.startswith("error:") and str(ws) not in result and str(ws.parent) not in result, result
        assert os.path.expanduser("~") not in result or os.path.expanduser("~") == "/", result


def test_tool_results_are_redacted(ws):
    secret = "liveKeyValue-7f3a9c2e41"
    (ws / "src" / "settings.txt").write_text(f"token = {secret}\n")
    redact.register(secret)
    try:
        box = ToolBox(Sandbox([ws]))
        for result in (run(box, "read_file", path="src/settings.txt"), run(box, "search_text", pattern="token")):
            assert secret not in result and redact.MASK in result, result
    finally:
        redact._live.discard(secret)


# -- the tool loop: calls per round and one deadline -------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[str] = []

    def sent(self) -> None:
        pass

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def delta(self, kind: str, text: str) -> None:
        pass


class Flooding(KimiClient):
    """The real client against the fake, except that the first tool call of a reply comes back `copies` times."""

    copies = 200

    async def stream_chat(self, body, emit, on_sent=None, timeout=None, status=None):
        reply = await super().stream_chat(body, emit, on_sent, timeout)
        if reply.tool_calls:
            call = reply.tool_calls[0]
            reply.tool_calls = [
                ToolCall(f"{call.id}.{i}", call.type, call.name, call.arguments) for i in range(self.copies)
            ]
        return reply


def job_for(prompt: str, settings: Settings) -> Job:
    return Job(
        action=BUILTIN_ACTIONS["ask"],
        text="",
        start=0,
        end=0,
        settings=settings,
        model=BUILTIN_MODELS["kimi-k2.5"],
        request_id="t1",
        instruction=prompt,
    )


async def test_tool_calls_per_round_are_capped(fake, ws):
    settings = Settings(base_url=fake.base_url, thinking="disabled")
    pool = ClientPool()
    sink = Recorder()
    try:
        client = Flooding(pool, settings, FAKE_KEY)
        out = await asyncio.wait_for(
            run_job(job_for("read src/ok.py", settings), client, sink, tools=ToolBox(Sandbox([ws]))), 30
        )
    finally:
        await pool.aclose()
    assert sink.statuses.count("reading src/ok.py:1-200") == 16
    tool_messages = [m for m in fake.chat_requests()[-1].body["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == Flooding.copies  # every call is answered, as the API requires
    ran = [m for m in tool_messages if not m["content"].startswith("error:")]
    assert len(ran) == 16 and all("at most 16" in m["content"] for m in tool_messages[16:])
    assert out.text.count("**fake-kimi** read src/ok.py: 1: def visible():") == 16


class SlowTools(ToolBox):
    """A tool that would take half a minute: the job's deadline must cut it short."""

    async def run(self, call, deadline=None):
        self.deadline = deadline
        await asyncio.sleep(30)
        return "late"


async def test_tool_work_counts_against_the_request_timeout(fake, ws):
    settings = Settings(base_url=fake.base_url, thinking="disabled", request_timeout=1.5)
    pool = ClientPool()
    tools = SlowTools(Sandbox([ws]))
    began = time.monotonic()
    try:
        with pytest.raises(errors.TimedOut, match="kimi.requestTimeout"):
            await asyncio.wait_for(
                run_job(
                    job_for("read src/ok.py", settings), KimiClient(pool, settings, FAKE_KEY), Recorder(), tools=tools
                ),
                10,
            )
    finally:
        await pool.aclose()
    assert time.monotonic() - began < 3
    assert tools.deadline is not None and tools.deadline <= began + 1.6  # the worker knows when to stop


# -- end to end: the real server, the fake's tool-calling model ---------------------------------------------------


async def test_symlinked_secrets_never_reach_the_model(fake, ws):
    prompt = "read notes.txt then read .BASHRC then read env.txt then read ext/plain.txt then read src/ok.py"
    async with editor("neovim", ws, base(fake, maxToolRounds=8)) as ed:
        r = await ed.command("kimi.ask", {"prompt": prompt})
        lines = r["text"].splitlines()
        assert [line.split(":")[0] for line in lines[:4]] == [
            "**fake-kimi** could not read notes.txt",
            "**fake-kimi** could not read .BASHRC",
            "**fake-kimi** could not read env.txt",
            "**fake-kimi** could not read ext/plain.txt",
        ], r
        assert lines[4] == "**fake-kimi** read src/ok.py: 1: def visible():"
        sent = json.dumps([q.body for q in fake.chat_requests()])
        assert MARK not in sent and str(ws) not in sent and str(Path(ws).parent) not in sent
