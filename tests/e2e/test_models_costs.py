"""Kimi as it is today, end to end: the cost of each answer in both currencies, the session total and balance,
retired model ids and their successor, and kimi-k3's 1M window."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest
from lsprotocol import types as lsp

from harness import base, editor, rng, server_env

CODE = "def f(x):\n    return x * 2\n\n\nprint(f(2))\n"
SEL = rng(0, 0, 2, 0)
# A file large enough that the part every action on it shares is past the prefix cache's minimum block.
BIG = CODE + "".join(
    f"def helper_{i}(value):\n    return value + {i}  # keeps the file realistic\n\n" for i in range(120)
)


def kimi(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kimi_lsp", *args], cwd=cwd, env=server_env(), capture_output=True, text=True, timeout=60
    )


MONEY = {"USD": re.compile(r"· \$\d+\.\d{4}$"), "CNY": re.compile(r"· ¥\d+\.\d{4}$")}


@pytest.mark.parametrize("region,currency", [("international", "USD"), ("china", "CNY")])
async def test_cost_in_result_stream_progress_and_status(region, currency, profile, fake, tmp_path):
    fake.configure(balance=12.5)
    settings = base(fake, model="kimi-k2.6", region=region)
    async with editor(profile, tmp_path, settings, init_options={"stream": True}) as ed:
        uri = ed.open("a.py", BIG)
        results = [await ed.command(cmd, {"uri": uri, "range": SEL}) for cmd in ("kimi.explain", "kimi.refactor")]
        for r in results:
            usage, spent = r["usage"], r["cost"]
            assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
            assert spent["currency"] == currency and spent["amount"] > 0
        # the second answer on the same file reuses the first one's prefix: cheaper per prompt token
        assert results[1]["usage"]["cached_tokens"] > 0
        done = [s for s in ed.stream if s.get("kind") == "done"]
        assert [d["cost"] for d in done] == [r["cost"] for r in results]
        assert all(MONEY[currency].search(d["spent"]) for d in done), done
        ends = [m for m in ed.progress_messages() if m.startswith(("Done ·", "Applied ·"))]
        # (a fast answer can end before its progress is created: then there is no progress to end)
        assert ends and all(MONEY[currency].search(m) for m in ends), ed.progress_messages()
        status = await ed.command("kimi.status")
        assert status["currency"] == currency and status["session"]["answers"] == 2
        [total] = status["session"]["cost"]
        assert total["currency"] == currency
        assert total["amount"] == pytest.approx(sum(r["cost"]["amount"] for r in results))
        assert status["balance"]["amount"] == 12.5 and status["balance"]["currency"] == currency
        assert status["balance"]["text"] == ("$12.5000" if currency == "USD" else "¥12.5000")


async def test_no_price_no_cost(fake, tmp_path):
    """kimi-k2.5 has no published CNY price: tokens are shown, the cost is omitted, never guessed."""
    async with editor("neovim", tmp_path, base(fake, region="china"), init_options={"stream": True}) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert r["cost"] is None and r["usage"]["total_tokens"] > 0
        [done] = [s for s in ed.stream if s.get("kind") == "done"]
        assert done["spent"].endswith("tokens") and "¥" not in done["spent"]
        status = await ed.command("kimi.status")
        assert status["session"]["unpriced"] == 1 and status["session"]["cost"] == []


async def test_custom_price(fake, tmp_path):
    custom = [
        {
            "id": "kimi-k2.5",
            "contextLength": 262144,
            "vision": True,
            "thinking": True,
            "price": {"input": 4.0, "cachedInput": 0.7, "output": 21.0},
        }
    ]
    async with editor("neovim", tmp_path, base(fake, region="china", customModels=custom)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        u = r["usage"]
        expected = (
            (u["prompt_tokens"] - u["cached_tokens"]) * 4.0 + u["cached_tokens"] * 0.7 + u["completion_tokens"] * 21.0
        ) / 1e6
        assert r["cost"]["currency"] == "CNY" and r["cost"]["amount"] == pytest.approx(expected)


@pytest.mark.parametrize("retired", ["kimi-k2-thinking", "kimi-k2-0905-preview"])
async def test_retired_model_diagnostic_offers_the_successor_first(retired, profile, fake, tmp_path):
    async with editor(profile, tmp_path, base(fake, model=retired)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert r["error"]["code"] == "model-not-found" and "kimi-k2.6" in r["error"]["message"]
        await ed.wait_for(lambda: ed.client.diagnostics.get(uri), what="diagnostic")
        [d] = ed.client.diagnostics[uri]
        assert d.code == "model-not-found" and f"retired {retired}" in d.message
        fixes = await ed.code_actions(uri, SEL, diagnostics=[d], only=[lsp.CodeActionKind.QuickFix])
        first = fixes[0]
        assert first.title == f"Kimi: Use kimi-k2.6 (the successor of {retired})" and first.is_preferred
        assert first.command.arguments[0] == {"model": "kimi-k2.6"}
        await ed.command(first.command.command, first.command.arguments[0])
        await ed.wait_for(lambda: not ed.client.diagnostics.get(uri), what="cleared")
        r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
        assert r["model"] == "kimi-k2.6" and fake.chat_requests()[-1].body["model"] == "kimi-k2.6"


async def test_k3_takes_a_300k_token_prompt(fake, tmp_path):
    """A selection of about 300K tokens is refused for a 262K model and sent to kimi-k3's 1M window."""
    line = "value = compute(alpha, beta, gamma)  # a line of ordinary code\n"
    big = line * (300_000 * 3 // len(line) + 1)  # the local estimate: about 3 characters a token
    sel = rng(0, 0, big.count("\n"), 0)
    settings = base(fake, model="kimi-k2.6", reasoningEffort="high", fileContextTokens=0, requestTimeout=120)
    async with editor("neovim", tmp_path, settings) as ed:
        uri = ed.open("big.py", big)
        r = await ed.command("kimi.explain", {"uri": uri, "range": sel}, timeout=60)
        assert r["error"]["code"] == "refused" and "kimi-k3" in r["error"]["message"]
        ed.configure({**settings, "model": "kimi-k3"})
        await asyncio.sleep(0.2)
        r = await ed.command("kimi.explain", {"uri": uri, "range": sel}, timeout=60)
        assert "error" not in r, r
        body = fake.chat_requests()[-1].body
        assert body["model"] == "kimi-k3" and body["reasoning_effort"] == "high" and "thinking" not in body
        assert r["usage"]["prompt_tokens"] > 200_000
        assert body["max_completion_tokens"] <= 1_048_576 - r["usage"]["prompt_tokens"]


async def test_always_thinking_model_says_so_once(fake, tmp_path):
    settings = base(fake, model="kimi-k2.7-code", thinking="disabled", temperature=0.2)
    async with editor("neovim", tmp_path, settings) as ed:
        uri = ed.open("a.py", CODE)
        for _ in range(2):
            r = await ed.command("kimi.explain", {"uri": uri, "range": SEL})
            assert r["reasoning"] and "error" not in r
        body = fake.chat_requests()[-1].body
        assert "thinking" not in body and "temperature" not in body
        said = [m for m in ed.messages() if "always thinks" in m]
        assert len(said) == 1 and "kimi-k2.7-code" in said[0]
        assert len([m for m in ed.messages() if "fixed sampling" in m]) == 1


def test_cli_prints_the_cost_line(tmp_path, fake):
    (tmp_path / "a.py").write_text(CODE)
    r = kimi("run", "explain", "a.py:1-2", "--base-url", fake.base_url, "--model", "kimi-k2.6", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert re.match(r"\[kimi\] kimi-k2\.6 · [\d,]+ tokens .*· \$\d+\.\d{4} · [\d,]+ ms$", last), last
    r = kimi("check", "--base-url", fake.base_url, "--region", "china", cwd=tmp_path)
    assert re.search(r"balance    : ¥\d+\.\d{4}", r.stdout), r.stdout


async def test_after_an_edit_the_next_prompt_keeps_its_cached_prefix(fake, tmp_path):
    """An applied edit changes the file; the next action still sends the file as the first prompt did (cached) and
    the change as a diff after it, so the model sees the file as it is now."""
    async with editor("neovim", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", BIG)
        first = await ed.command("kimi.refactor", {"uri": uri, "range": SEL, "instruction": "rename x to y"})
        assert first["applied"] is True and ed.texts[uri].startswith("def f(y):")
        far = BIG.count("\n") - 3
        r = await ed.command("kimi.explain", {"uri": uri, "range": rng(far, 0, far + 2, 0)})
        user = fake.chat_requests()[-1].body["messages"][-1]["content"]
        assert "```python\ndef f(x):" in user  # the file as the first prompt sent it
        assert "```diff\n--- before\n+++ now\n@@ -1," in user and "+def f(y):" in user
        assert f"(lines {far + 1}–{far + 2} of the file as it is now, with the changes)" in user
        assert r["usage"]["cached_tokens"] > 0.8 * r["usage"]["prompt_tokens"]
