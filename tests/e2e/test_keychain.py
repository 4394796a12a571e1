"""The API key in a real OS keychain (gnome-keyring's Secret Service inside dbus-run-session; see scripts/test)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import FAKE_KEY, editor, rng, server_env

REQUIRED = os.environ.get("KIMI_LSP_REQUIRE_KEYCHAIN") == "1"


def secret_service_works() -> bool:
    probe = (
        "import keyring,sys; from keyring.backends.SecretService import Keyring as K; "
        "k=K(); keyring.set_keyring(k); keyring.set_password('kimi-lsp-probe','p','v'); "
        "ok=keyring.get_password('kimi-lsp-probe','p')=='v'; keyring.delete_password('kimi-lsp-probe','p'); "
        "sys.exit(0 if ok else 1)"
    )
    try:
        return subprocess.run([sys.executable, "-c", probe], timeout=20, capture_output=True).returncode == 0
    except Exception:
        return False


@pytest.fixture(scope="module")
def keychain():
    if not secret_service_works():
        if REQUIRED:
            pytest.fail(
                "scripts/test should have started an unlocked gnome-keyring, but the Secret Service is unusable"
            )
        pytest.skip("no Secret Service here; run through scripts/test")


def keychain_env():
    env = server_env()
    env.pop("MOONSHOT_API_KEY")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.SecretService.Keyring"
    return env


async def test_set_use_clear_key_in_real_keychain(keychain, fake, tmp_path):
    settings = {"baseUrl": fake.base_url, "previewEdits": "never", "commandResult": "final", "region": "china"}
    async with editor("visual-studio-code", tmp_path, settings, env=keychain_env()) as ed:
        uri = ed.open("a.py", "x = 1\n")
        await ed.command("kimi.clearApiKey")  # a keyring left over from an earlier run
        st = await ed.command("kimi.status")
        assert st["keyPresent"] is False
        r = await ed.command("kimi.setApiKey", {"key": FAKE_KEY})
        assert r == {"stored": True, "verified": True, "message": r["message"]}
        assert "china" in r["message"]
        st = await ed.command("kimi.status")
        assert st["keySource"] == "keychain" and FAKE_KEY not in repr(st)
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(0, 0, 1, 0)})
        assert "text" in r
    # a new server process finds the key in the keychain (and only for that region)
    async with editor("neovim", tmp_path, settings, env=keychain_env()) as ed:
        st = await ed.command("kimi.status")
        assert st["keySource"] == "keychain"
        ed.configure({**settings, "region": "international"})
        st = await ed.command("kimi.status")
        assert st["region"] == "international" and st["keyPresent"] is False
        ed.configure(settings)
        r = await ed.command("kimi.clearApiKey")
        assert r["cleared"] is True
        st = await ed.command("kimi.status")
        assert st["keyPresent"] is False


async def test_wrong_key_is_stored_but_reported(keychain, fake, tmp_path):
    settings = {"baseUrl": fake.base_url, "commandResult": "final"}
    async with editor("neovim", tmp_path, settings, env=keychain_env()) as ed:
        r = await ed.command("kimi.setApiKey", {"key": "sk-wrong"})
        assert r["stored"] is True and r["verified"] is False and "rejected" in r["message"]
        assert (await ed.command("kimi.clearApiKey"))["cleared"] is True


def test_cli_set_key_and_clear_key(keychain, fake, tmp_path):
    """`kimi-lsp set-key` reads the key from stdin, verifies it, stores it; `check` then finds it; `clear-key`
    removes it. The key is never printed."""
    env = keychain_env()

    def kimi(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kimi_lsp", *args],
            input=stdin,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = kimi("set-key", "--base-url", fake.base_url, stdin="sk-wrong-key-000000\n")
    assert bad.returncode == 1 and "not stored" in bad.stderr and "sk-wrong" not in bad.stderr + bad.stdout
    ok = kimi("set-key", "--base-url", fake.base_url, stdin=FAKE_KEY + "\n")
    assert ok.returncode == 0 and "OS keychain" in ok.stdout and FAKE_KEY not in ok.stdout + ok.stderr
    check = kimi("check", "--base-url", fake.base_url)
    assert "key source : keychain" in check.stdout and "accepted" in check.stdout
    cleared = kimi("clear-key")
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    check = kimi("check", "--base-url", fake.base_url)
    assert "key source : none" in check.stdout and check.returncode == 1
