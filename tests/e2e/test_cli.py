"""The command line: the same pipeline without an editor, against the offline stand-in and the fake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import server_env

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample.py"


def kimi(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kimi_lsp", *args],
        cwd=cwd,
        env=env or server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sample(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "sample.py")
    return tmp_path / "sample.py"


def test_readme_offline_command(sample):
    """The README's first command (refactor on the shipped sample, offline)."""
    r = kimi("run", "refactor", "sample.py:4-9", "--instruction", "rename total to acc", "--offline", cwd=sample.parent)
    assert r.returncode == 0, r.stderr
    assert "-    total = 0\n+    acc = 0\n" in r.stdout and r.stdout.startswith("--- a/sample.py")
    assert "not from Kimi" in r.stderr and "offline stand-in" in r.stderr
    assert sample.read_text() == SAMPLE.read_text()  # no --apply: nothing written


def test_run_apply_and_explain(sample):
    r = kimi("run", "fix", "sample.py:8-9", "--offline", "--apply", cwd=sample.parent)
    assert r.returncode == 0 and "# FIXED: crashes" in sample.read_text()
    assert sample.read_text().replace("FIXED", "BUG") == SAMPLE.read_text()
    r = kimi("run", "explain", "sample.py:4-9", "--offline", cwd=sample.parent)
    assert r.returncode == 0 and r.stdout.startswith("**fake-kimi** explains 6 lines of python code")
    assert "Thinking about" in r.stderr and "Thinking about" not in r.stdout  # reasoning kept apart


def test_run_errors(sample, fake):
    r = kimi("run", "nonsense", "sample.py", "--offline", cwd=sample.parent)
    assert r.returncode == 2 and "unknown action" in r.stderr
    r = kimi("run", "explain", "missing.py", "--offline", cwd=sample.parent)
    assert r.returncode == 2 and "cannot read" in r.stderr
    env = server_env(MOONSHOT_API_KEY="sk-wrong")
    r = kimi("run", "refactor", "sample.py:4-9", "--base-url", fake.base_url, cwd=sample.parent, env=env)
    assert r.returncode == 1 and "rejected the API key" in r.stderr and "sk-wrong" not in r.stderr + r.stdout
    assert sample.read_text() == SAMPLE.read_text()


def test_check(tmp_path, fake):
    r = kimi("check", "--offline", cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "key        : accepted" in r.stdout and "balance" in r.stdout and "offline" in r.stdout
    r = kimi("check", "--base-url", fake.base_url, "--model", "kimi-k9", cwd=tmp_path)
    assert r.returncode == 1 and "kimi-k9 is not available" in r.stdout and "moonshot-v1-8k" in r.stdout
    assert "key source : environment" in r.stdout and "sk-fake" not in r.stdout
    env = server_env()
    env.pop("MOONSHOT_API_KEY")
    r = kimi("check", "--base-url", fake.base_url, cwd=tmp_path, env=env)
    assert r.returncode == 1 and "key source : none" in r.stdout and "MOONSHOT_API_KEY" in r.stdout


def test_version_and_fake_api_help(tmp_path):
    r = kimi("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("kimi-lsp ")
    r = kimi("fake-api", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--port" in r.stdout


def test_set_key_without_a_keychain_says_so(tmp_path, fake):
    env = server_env()
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    r = subprocess.run(
        [sys.executable, "-m", "kimi_lsp", "set-key", "--base-url", fake.base_url],
        input="sk-fake-valid-key\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "keychain" in r.stderr.lower() and "sk-fake-valid-key" not in r.stderr + r.stdout
    empty = subprocess.run(
        [sys.executable, "-m", "kimi_lsp", "set-key"],
        input="",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode == 2 and "no key given" in empty.stderr
