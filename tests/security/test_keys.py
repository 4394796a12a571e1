"""The API key: validated and stripped wherever it comes from, never echoed back, never sent where it should
not go (through a proxy in clear text, to a redirect target), and taken out of every request body.

Hostile endpoints are tiny HTTP servers on 127.0.0.1 in a thread; the well-behaved API is the bundled fake.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import keyring
import pytest
from keyring.backends.fail import Keyring as FailKeyring

from fault_helpers import Recorder, safe_editor
from harness import FAKE_KEY, base, editor, rng, server_env
from kimi_lsp import errors, redact
from kimi_lsp.kimi.http import ClientPool, KimiClient
from kimi_lsp.kimi.keys import KeyStore, clean_key
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.kimi.rules import chat_body
from kimi_lsp.settings import Settings, merge_settings

KEY = "sk-Q7xZ9pLm2vR4tY8w"  # distinctive, so a fragment of it is recognisable in any output


def fragments(key: str, size: int = 6) -> list[str]:
    return [key[i : i + size] for i in range(len(key) - size + 1)]


def assert_no_fragment(text: str, key: str) -> None:
    for piece in fragments(key):
        assert piece not in text, f"{piece!r} of the key is in {text!r}"


# -- hostile endpoints ---------------------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], str]


class Hostile:
    """An HTTP server on loopback that answers every request with `reply(handler)` and records what it got."""

    def __init__(self, reply: Callable[[BaseHTTPRequestHandler], Reply]) -> None:
        self.reply = reply
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = outer.reply(self)
                data = body.encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def auth(handler: BaseHTTPRequestHandler) -> str:
    return handler.headers.get("Authorization", "")


# Each row: how a hostile endpoint echoes what it was sent.
ECHOES: dict[str, Callable[[BaseHTTPRequestHandler], Reply]] = {
    "401 echoes the header": lambda h: (
        401,
        {},
        json.dumps(
            {"error": {"type": "invalid_authentication_error", "message": f"Invalid Authentication: {auth(h)}"}}
        ),
    ),
    "401 echoes the bare key": lambda h: (
        401,
        {},
        json.dumps({"error": {"message": f"key {auth(h).removeprefix('Bearer ')} is not valid"}}),
    ),
    "400 plain text echo": lambda h: (
        400,
        {"Content-Type": "text/plain"},
        f"bad request; headers were {dict(h.headers)}",
    ),
    "400 key as request id": lambda h: (
        400,
        {"msh-request-id": auth(h).removeprefix("Bearer ")},
        json.dumps({"error": {"message": "no"}}),
    ),
}


@pytest.fixture
def fail_keyring():
    """No OS keychain: the key comes from the environment (or the session)."""
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def forget_keys():
    yield
    redact.forget_all()


# -- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [KEY + " ", KEY + "\r", KEY + "\r\n", "\t" + KEY + "\n", "  " + KEY])
def test_surrounding_whitespace_is_stripped(raw):
    assert clean_key(raw) == KEY


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (KEY[:8] + "\x00" + KEY[8:], "control character"),
        (KEY[:8] + "\x7f" + KEY[8:], "control character"),
        (KEY[:8] + "\r\n" + KEY[8:], "control character"),
        (KEY[:8] + " " + KEY[8:], "space"),
        (KEY[:8] + "\t" + KEY[8:], "control character"),
        (KEY[:8] + "é" + KEY[8:], "cannot be sent in an HTTP header"),
        ("\u201c" + KEY + "\u201d", "cannot be sent in an HTTP header"),
        (KEY[:8] + "\u00a0" + KEY[8:], "cannot be sent in an HTTP header"),
        ("   \r\n", "empty"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(raw, says):
    with pytest.raises(errors.InvalidApiKey) as info:
        clean_key(raw)
    message = str(info.value)
    assert says in message
    assert_no_fragment(message, KEY)


async def test_every_key_the_store_holds_is_registered_and_stripped(monkeypatch, fail_keyring):
    monkeypatch.setenv("MOONSHOT_API_KEY", KEY + "\r")
    store = KeyStore()
    key, source = await store.get("international")
    assert (key, source) == (KEY, "environment")
    assert redact.redact(f"echo {KEY}") == f"echo {redact.MASK}"
    other = "sk-Another9Key8Here7"
    store.remember("china", other + " ")
    assert await store.get("china") == (other, "session")
    assert other not in redact.redact(other)


async def test_a_trailing_cr_in_the_environment_still_works(monkeypatch, fail_keyring, fake):
    """The key with a CR used to come back inside httpx's 'Illegal header value' error."""
    monkeypatch.setenv("MOONSHOT_API_KEY", FAKE_KEY + "\r")
    key, _ = await KeyStore().get("international")
    pool = ClientPool()
    try:
        models = await KimiClient(pool, Settings(base_url=fake.base_url), key).list_models()
    finally:
        await pool.aclose()
    assert models and fake.requests[-1].headers["authorization"] == f"Bearer {FAKE_KEY}"


async def test_the_client_refuses_an_unusable_key_before_sending(fake):
    pool = ClientPool()
    try:
        with pytest.raises(errors.InvalidApiKey) as info:
            await KimiClient(pool, Settings(base_url=fake.base_url), KEY + "é").list_models()
    finally:
        await pool.aclose()
    assert "cannot be sent in an HTTP header" in str(info.value) and not fake.requests
    assert_no_fragment(str(info.value), KEY)


# -- echoes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", list(ECHOES))
async def test_an_echoed_key_is_redacted_from_errors(row):
    with Hostile(ECHOES[row]) as hostile:
        pool = ClientPool()
        try:
            with pytest.raises(errors.KimiError) as info:
                await KimiClient(pool, Settings(base_url=hostile.url), KEY).list_models()
        finally:
            await pool.aclose()
    exc = info.value
    assert hostile.requests, "the request reached the endpoint"
    shown = " ".join([str(exc), exc.message, exc.api_message, str(exc.request_id)])
    assert_no_fragment(shown, KEY)


async def test_an_echoing_endpoint_leaks_nothing_to_the_editor(tmp_path):
    """Command results, showMessage, diagnostics, progress, the JSON-RPC trace, stderr and the DEBUG log."""
    log = tmp_path / "server.log"
    reply: list[Callable] = [ECHOES["401 echoes the header"]]
    with Hostile(lambda h: reply[0](h)) as hostile:
        async with safe_editor(
            "neovim",
            tmp_path,
            {"baseUrl": hostile.url, "previewEdits": "never", "commandResult": "final"},
            log_file=log,
        ) as ed:
            rec = Recorder(ed, log)
            uri = ed.open("a.py", "x = 1\ny = 2\n")
            for row, echo in ECHOES.items():
                reply[0] = echo
                mark = rec.mark()
                results = [
                    await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)}),
                    await ed.command("kimi.listModels"),
                    await ed.command("kimi.setApiKey", {"key": FAKE_KEY + "\r\n"}),
                ]
                assert results[0]["error"]["code"] in ("unauthorized", "bad-request"), (row, results[0])
                assert results[1]["error"] and results[2]["verified"] is False, (row, results)
                assert rec.messages_since(mark), row  # the user was told
                rec.assert_no_key(mark, results)
            assert len(hostile.requests) >= 3 * len(ECHOES)
    assert log.exists() and log.stat().st_size > 0


def kimi_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kimi_lsp", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("row", list(ECHOES))
def test_check_output_is_redacted(row, tmp_path):
    log = tmp_path / "check.log"
    with Hostile(ECHOES[row]) as hostile:
        r = kimi_cli(
            "--log-level", "DEBUG", "--log-file", str(log), "check", "--base-url", hostile.url, env=server_env()
        )
    out = r.stdout + r.stderr + (log.read_text() if log.exists() else "")
    assert r.returncode == 1 and "PROBLEM" in r.stdout, out
    assert FAKE_KEY not in out and "fake-valid" not in out, out


def test_check_with_a_cr_or_a_non_ascii_key(fake):
    r = kimi_cli("check", "--base-url", fake.base_url, env=server_env(MOONSHOT_API_KEY=FAKE_KEY + "\r"))
    assert r.returncode == 0 and "key        : accepted" in r.stdout, r.stdout + r.stderr
    r = kimi_cli("check", "--base-url", fake.base_url, env=server_env(MOONSHOT_API_KEY=KEY + "é"))
    assert r.returncode == 1 and "cannot be sent in an HTTP header" in r.stdout, r.stdout + r.stderr
    assert_no_fragment(r.stdout + r.stderr, KEY)
    assert not [q for q in fake.requests if q.headers.get("authorization", "").endswith(KEY[-6:] + "é")]


async def test_set_api_key_strips_and_refuses_without_echo(fake, tmp_path):
    async with safe_editor("neovim", tmp_path, base(fake)) as ed:
        r = await ed.command("kimi.setApiKey", {"key": f"  {FAKE_KEY}\r\n"})
        assert r["verified"] is True, r  # stripped, then accepted by the fake
        assert fake.requests[-1].headers["authorization"] == f"Bearer {FAKE_KEY}"
        r = await ed.command("kimi.setApiKey", {"key": KEY + "é"})
        assert r["stored"] is False and r["verified"] is False, r
        assert "cannot be sent in an HTTP header" in r["message"]
        assert_no_fragment(json.dumps(r) + " ".join(ed.messages()), KEY)


# -- what reaches the model ----------------------------------------------------------------------------------


async def test_the_live_key_is_redacted_from_prompts_and_tool_results(fake, tmp_path):
    (tmp_path / "notes.md").write_text(f"token = {FAKE_KEY}\nmore\n")
    async with safe_editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", f"API_KEY = '{FAKE_KEY}'\nprint(API_KEY)\n")
        r = await ed.command("kimi.ask", {"uri": uri, "range": rng(0, 0, 2, 0), "instruction": "read notes.md"})
        assert "error" not in r, r
    chats = fake.chat_requests()
    assert len(chats) >= 2, "a tool round happened"
    sent = json.dumps([c.body for c in chats])
    assert FAKE_KEY not in sent and "fake-valid" not in sent
    assert "API_KEY = '[redacted]'" in sent  # the selection
    assert "token = [redacted]" in sent  # the tool result
    assert r["text"].startswith("**fake-kimi** read notes.md: ") and r["text"].endswith("token = [redacted]")


async def test_stream_chat_and_post_json_bodies_are_redacted(fake):
    pool = ClientPool()
    settings = Settings(base_url=fake.base_url, thinking="disabled")
    client = KimiClient(pool, settings, FAKE_KEY)
    redact.register(FAKE_KEY)
    messages = [{"role": "user", "content": f"my key is {FAKE_KEY}, the bearer is Bearer abc.def"}]
    body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, messages)
    try:
        await client.stream_chat(body, lambda kind, text: None)
        await client.estimate_tokens("kimi-k2.5", messages)
    finally:
        await pool.aclose()
    sent = json.dumps([q.body for q in fake.requests])
    assert FAKE_KEY not in sent and "abc.def" not in sent and sent.count(redact.MASK) >= 4
    assert messages[0]["content"].startswith(f"my key is {FAKE_KEY}")  # the caller's history is left alone


# -- a proxy never sees a loopback request ---------------------------------------------------------------------


class ProxyProbe:
    """Listens on loopback like an HTTP proxy would; records whether anyone connected, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.contacted = threading.Event()
        self.seen = b""
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.contacted.set()
            conn.settimeout(2)
            try:
                self.seen += conn.recv(65536)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("via", ["kimi.proxy", "HTTP_PROXY", "ALL_PROXY"])
async def test_loopback_never_goes_through_a_proxy(via, fake, monkeypatch):
    probe = ProxyProbe()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    if via == "kimi.proxy":
        settings = Settings(base_url=fake.base_url, proxy=probe.url)
    else:
        monkeypatch.setenv(via, probe.url)
        settings = Settings(base_url=fake.base_url)
    pool = ClientPool()
    try:
        models = await KimiClient(pool, settings, FAKE_KEY).list_models()
    finally:
        await pool.aclose()
        probe.close()
    assert not probe.contacted.is_set(), f"the proxy saw {probe.seen!r}"
    assert models and fake.requests[-1].path == "/v1/models"


# -- redirects ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("call", ["list_models", "stream_chat"])
async def test_a_redirect_is_neither_followed_nor_retried(status, call):
    with Hostile(lambda h: (200, {}, "{}")) as target:
        where = f"http://127.0.0.1:{target.server.server_address[1]}/v1/elsewhere"
        with Hostile(lambda h: (status, {"Location": where}, "")) as hostile:
            pool = ClientPool()
            settings = Settings(base_url=hostile.url, thinking="disabled")
            client = KimiClient(pool, settings, KEY)
            try:
                with pytest.raises(errors.Redirected) as info:
                    if call == "list_models":
                        await client.list_models()
                    else:
                        body = chat_body(BUILTIN_MODELS["kimi-k2.5"], settings, [{"role": "user", "content": "hi"}])
                        await client.stream_chat(body, lambda kind, text: None)
            finally:
                await pool.aclose()
    message = str(info.value)
    assert len(hostile.requests) == 1, "not retried"
    assert target.requests == [], "the key was not sent to the redirect target"
    assert f"HTTP {status}" in message and f"127.0.0.1:{target.server.server_address[1]}" in message
    assert "kimi.baseUrl" in message and "point it at the API itself" in message
    assert not info.value.retryable


# -- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("baseUrl", "http://127.0.0.1:8000/v1\r\nX-Injected: 1"),
        ("baseUrl", "https://api.moonshot.ai/v1\n"),
        ("baseUrl", "https://api.moonshot.ai/\tv1"),
        ("baseUrl", "https://api.moon shot.ai/v1"),
        ("baseUrl", "https://api.moonshot.ai/v1\x00"),
        ("baseUrl", "api.moonshot.ai/v1"),
        ("baseUrl", "ftp://api.moonshot.ai/v1"),
        ("baseUrl", "https://"),
        ("baseUrl", "https:///v1"),
        ("baseUrl", "https://host:99999/v1"),
        ("proxy", "http://proxy:3128\r\n"),
        ("proxy", "socks5://proxy:1080\x7f"),
        ("proxy", "http://"),
        ("proxy", "proxy:3128"),
    ],
)
def test_bad_urls_are_invalid_settings_and_the_last_good_value_stays(key, value):
    good = {"baseUrl": "https://good.example/v1", "proxy": "http://good-proxy:3128"}
    previous, problems = merge_settings(good)
    assert problems == []
    settings, problems = merge_settings({**good, key: value}, previous)
    assert len(problems) == 1 and problems[0].startswith(f"kimi.{key}"), problems
    assert (settings.base_url, settings.proxy) == ("https://good.example/v1", "http://good-proxy:3128")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("baseUrl", "https://api.moonshot.ai/v1"),
        ("baseUrl", "http://127.0.0.1:8000/v1/"),
        ("baseUrl", "http://[::1]:9/v1"),
        ("proxy", "socks5h://user:pw@p:1080"),
        ("proxy", "https://proxy"),
    ],
)
def test_good_urls_are_accepted(key, value):
    settings, problems = merge_settings({key: value})
    assert problems == []
    assert (settings.base_url if key == "baseUrl" else settings.proxy) == value.rstrip("/")


GUARD_ROWS = [
    # (the deltas, what the user may see in the end)
    (["key: sk-fake-valid", "-key done"], "key: [redacted] done"),
    (["Bear", "er sk-abcdefghijklmnopqrstu", "v end"], "Bearer [redacted] end"),
    (["sk", "-abcdefghijklmnopqrstuvwxyz", "0"], "[redacted]"),
    (["plain text ", "more"], "plain text more"),
    (["this is", " fine"], "this is fine"),
    (["a s", "o b"], "a so b"),
    (["x " + "sk-" + "b" * 500, " tail"], "x [redacted] tail"),
]


@pytest.mark.parametrize("deltas,seen", GUARD_ROWS)
def test_a_key_split_across_stream_deltas_is_redacted_whole(deltas, seen):
    from kimi_lsp.redact import StreamGuard, register

    register(FAKE_KEY)
    guard = StreamGuard()
    shown = [guard.feed(d) for d in deltas]
    assert "".join(shown) + guard.flush() == seen
    for i in range(1, len(deltas)):  # nothing shown so far, glued together, starts a secret that is shown later
        assert "sk-abcdefghijklmnop" not in "".join(shown[:i]) and "fake-valid" not in "".join(shown[:i])


async def test_a_key_echoed_in_small_chunks_never_reaches_the_stream(fake, tmp_path):
    """A hostile endpoint streams the key two characters at a time: kimi/stream never carries it."""
    from kimi_lsp.fake import Fault

    fake.configure(chunk_chars=2)
    fake.script(Fault("reply", content=f"Your key is {FAKE_KEY}, and a bearer: Bearer {FAKE_KEY}x."))
    async with editor("visual-studio-code", tmp_path, base(fake), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", "x = 1\n")
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)})
        streamed = "".join(n.get("text") or "" for n in ed.stream if n.get("kind") == "content")
        assert "[redacted]" in streamed and "fake-valid" not in streamed and "fake-valid" not in json.dumps(r)
        assert streamed.startswith("Your key is [redacted], and a bearer: Bearer [redacted]")
