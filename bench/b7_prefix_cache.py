"""B7: Moonshot's automatic prefix cache over a scripted editing session.

Ten mixed actions (explain, refactor, fix, document, ask: two of each) over two generated files of about 300
lines (bench/b7_sources.py: Python and TypeScript), run through the request path the CLI uses
(`core.request.prepare`, `core.request.toolbox`, `core.pipeline.run_job` with a real `kimi.http.KimiClient`,
then `core.outputs.place` + `core.edits.apply_edits`, as `kimi-lsp run --apply` does), against a fresh fake
Moonshot API (`kimi_lsp.fake`, which reports `cached_tokens`: the longest prompt prefix the same key sent to the
same model within 5 minutes).

Each revision runs the session twice: with every edit applied (as an editor applies them, or `kimi-lsp run
--apply`: later prompts see the changed file, and an edit at line L leaves only the prompt up to L cached) and with
none applied (edits previewed and declined, or `kimi-lsp run` without --apply: the files stay as they were).

The session runs twice: with the prompt code of an earlier revision (BEFORE: `git archive <rev> server` into a
temporary folder, put first on PYTHONPATH of the session's process) and with this tree's (AFTER). The fake is
always this tree's, in a thread of the benchmark's process (B7 counts tokens, not time), never in the session's.

    .venv/bin/python bench/b7_prefix_cache.py              # both sessions, prints the B7 section
    .venv/bin/python bench/run.py --only B7 --no-write     # the same through the benchmark runner

Cost is computed here from the usage at kimi-k2.5's international prices (USD per million tokens): cache hit
0.10, cache miss 0.60, output 3.00.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

BEFORE_REV = "585f117"  # the last revision with one system prompt per task and only the window around the selection
PRICE = {"hit": 0.10, "miss": 0.60, "output": 3.00}  # kimi-k2.5, USD per million tokens (2026-12)
TARGET_SHARE = 0.60
RESULTS = HERE / "b7-results.json"

# (file, action, what to select, instruction or question, diagnostics): two of each kind, the files interleaved
SCRIPT: list[tuple[str, str, str, str, list[str]]] = [
    ("orders.py", "explain", "def order_total(", "", []),
    ("orders.py", "refactor", "def apply_discount(", "rename pct to percent", []),
    ("queue.ts", "explain", "  delayFor(", "", []),
    ("orders.py", "fix", "def average_order_value(", "", ["ZeroDivisionError when orders is empty"]),
    ("queue.ts", "document", "export function backoff(", "", []),
    ("orders.py", "ask", "def group_by_customer(", "Why sort each bucket after grouping?", []),
    ("queue.ts", "refactor", "  async processBatch(", "rename items to batch", []),
    ("queue.ts", "fix", "export function parseJob(", "", ["a restored running job loses its attempts"]),
    ("orders.py", "document", "def format_invoice(", "", []),
    ("queue.ts", "ask", "  enqueue(", "Can two jobs get the same id?", []),
]


def block_lines(text: str, anchor: str) -> tuple[int, int]:
    """1-based first and last lines of the definition starting at the line containing `anchor`: up to the last
    line before the next line indented as little as the first (Python), or to its closing brace (TypeScript)."""
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if anchor in line)
    indent = len(lines[first]) - len(lines[first].lstrip())
    if lines[first].rstrip().endswith("{"):
        depth = 0
        for i in range(first, len(lines)):
            depth += lines[i].count("{") - lines[i].count("}")
            if depth == 0:
                return first + 1, i + 1
    last = first
    for i in range(first + 1, len(lines)):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if line.strip():
            last = i
    return first + 1, last + 1


# ---------------------------------------------------------------------------------- the session (subprocess)


class _Quiet:
    def sent(self) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def delta(self, kind: str, text: str) -> None:
        pass


async def session(base_url: str, folder: Path, apply: bool) -> dict[str, Any]:
    """The scripted session with whatever kimi_lsp is first on sys.path; one row per action."""
    import kimi_lsp
    from b7_sources import python_source, typescript_source
    from kimi_lsp.core.actions import BUILTIN_ACTIONS
    from kimi_lsp.core.edits import apply_edits
    from kimi_lsp.core.outputs import place
    from kimi_lsp.core.pipeline import run_job
    from kimi_lsp.core.request import Snapshot, prepare, toolbox
    from kimi_lsp.core.tools import Sandbox
    from kimi_lsp.kimi.http import ClientPool, KimiClient
    from kimi_lsp.kimi.models import BUILTIN_MODELS, resolve
    from kimi_lsp.settings import merge_settings

    texts = {"orders.py": python_source(), "queue.ts": typescript_source()}
    languages = {"orders.py": "python", "queue.ts": "typescript"}
    for name, text in texts.items():
        (folder / name).write_text(text)
    settings, problems = merge_settings({"baseUrl": base_url})
    assert not problems, problems
    model = resolve(settings.model, settings.custom_models)
    sandbox = Sandbox([folder], deny=tuple(settings.tool_deny))
    try:  # as the editor does (lsp/features/actions.py): later prompts keep the file earlier ones sent
        from kimi_lsp.core.context import ContextBases

        bases: Any = ContextBases()
    except ImportError:  # an earlier revision without it
        bases = None
    pool = ClientPool()
    rows = []
    try:
        client = KimiClient(pool, settings, "sk-fake-valid-key")
        for name, action, anchor, words, diagnostics in SCRIPT:
            text = texts[name]
            first, last = block_lines(text, anchor)
            lines = text.split("\n")
            start = sum(len(x) + 1 for x in lines[: first - 1])
            end = start + sum(len(x) + 1 for x in lines[first - 1 : last])
            spec = BUILTIN_ACTIONS[action]
            snap = Snapshot(
                text=text,
                start=start,
                end=end,
                language=languages[name],
                path=name,
                folder=folder,
                instruction=words,
                diagnostics=[f"line {first}: {d}" for d in diagnostics],
            )
            if bases is not None:
                snap.base_text, snap.changes = bases.pick(name, text)
            job = await prepare(spec, snap, settings, model, sandbox, BUILTIN_MODELS.values())
            tools, _ = toolbox(settings, model, sandbox)
            t0 = time.perf_counter()
            outcome = await run_job(job, client, _Quiet(), BUILTIN_MODELS.values(), tools)
            usage = dict(outcome.usage or {})
            details = usage.get("prompt_tokens_details")
            cached = usage.get("cached_tokens") or (details.get("cached_tokens", 0) if isinstance(details, dict) else 0)
            changed = False
            if spec.edits and apply:
                new_text = apply_edits(text, place(job, outcome.new_code or ""))
                changed, texts[name] = new_text != text, new_text
            rows.append(
                {
                    "file": name,
                    "action": action,
                    "lines": [first, last],
                    "file_lines": len(lines) - (lines[-1] == ""),
                    "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                    "cached_tokens": int(cached or 0),
                    "completion_tokens": int(usage.get("completion_tokens", 0)),
                    "edited": changed,
                    "ms": round((time.perf_counter() - t0) * 1000, 1),
                }
            )
    finally:
        await pool.aclose()
    return {"kimi_lsp": str(Path(kimi_lsp.__file__).parent), "rows": rows}


# ---------------------------------------------------------------------------------------- the benchmark


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    prompt = sum(r["prompt_tokens"] for r in rows)
    cached = sum(r["cached_tokens"] for r in rows)
    output = sum(r["completion_tokens"] for r in rows)
    cost = ((prompt - cached) * PRICE["miss"] + cached * PRICE["hit"] + output * PRICE["output"]) / 1e6
    uncached = (prompt * PRICE["miss"] + output * PRICE["output"]) / 1e6
    return {
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": output,
        "share": cached / prompt if prompt else 0.0,
        "cost_usd": cost,
        "cost_without_cache_usd": uncached,
    }


def _before_tree(rev: str, into: Path) -> Path:
    """`server/` of `rev`, extracted (no worktree, nothing left in .git)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "server"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "server"


_FENCE = re.compile(r"^(`{3,})[^\n]*\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def seen_lines(messages: list[dict[str, Any]], file_lines: int) -> int:
    """Lines of the file in the user message: its fenced blocks (the whole file, or the context above and below
    and the selection), at most the file's."""
    content = messages[-1]["content"]
    text = content if isinstance(content, str) else content[0]["text"]
    return min(file_lines, sum(len(code.splitlines()) for _, code in _FENCE.findall(text)))


async def run_session(server_dir: Optional[Path], apply: bool) -> dict[str, Any]:
    """One session against a fresh fake (an empty cache), in a process whose kimi_lsp comes from `server_dir`
    (None: this tree's)."""
    from common import Fake

    fake = Fake("thread").start()
    try:
        fake.configure(first_token_delay=0.0, token_delay=0.0, chunk_chars=256)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOONSHOT_", "KIMI_"))}
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
        if server_dir is not None:
            env["PYTHONPATH"] = str(server_dir) + os.pathsep + env.get("PYTHONPATH", "")
        with tempfile.TemporaryDirectory(prefix="b7-") as folder:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--session",
                fake.base_url,
                folder,
                "apply" if apply else "keep",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"B7 session failed ({proc.returncode}): {err.decode()[-2000:]}")
        result = json.loads(out)
        chats = [r for r in fake.requests() if r["path"] == "/v1/chat/completions"]
        result["chat_requests"] = len(chats)
        if len(chats) == len(result["rows"]):  # one request an action: no tool rounds
            for row, chat in zip(result["rows"], chats):
                row["seen_lines"] = seen_lines(chat["body"]["messages"], row["file_lines"])
            seen = [r["seen_lines"] / r["file_lines"] for r in result["rows"]]
            low, high = f"{min(seen):.0%}", f"{max(seen):.0%}"
            result["seen"] = low if low == high else f"{low}–{high}"
        else:
            result["seen"] = "?"
        return result

    finally:
        fake.stop()


async def bench(before_rev: str = BEFORE_REV) -> dict[str, Any]:
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "before_rev": before_rev,
        "actions": len(SCRIPT),
    }
    with tempfile.TemporaryDirectory(prefix="b7-before-") as tmp:
        old = _before_tree(before_rev, Path(tmp))
        for mode in ("applied", "kept"):
            out[mode] = {}
            for side, tree in (("before", old), ("after", None)):
                res = await run_session(tree, apply=mode == "applied")
                out[mode][side] = {**res, **totals(res["rows"])}
    from kimi_lsp.settings import Settings

    defaults = Settings()
    out["settings"] = {"contextLines": defaults.context_lines, "fileContextTokens": defaults.file_context_tokens}
    return out


def save(b7: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps(b7, indent=1) + "\n")


def saved() -> Optional[dict[str, Any]]:
    """The last B7 result written, for pages rendered from runs without B7."""
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ report


def _usd(x: float) -> str:
    return f"${x:.4f}"


def table_row(b7: dict[str, Any]) -> tuple[str, str, str, str, str]:
    applied, kept = b7["applied"], b7["kept"]
    ok = [r["after"]["share"] >= TARGET_SHARE for r in (kept, applied)]
    verdict = "**pass**" if all(ok) else ("**pass** unedited, **FAIL** edits applied" if ok[0] else "**FAIL**")
    return (
        "B7",
        f"prefix cache: cached share of the prompt tokens of a scripted session ({b7['actions']} mixed actions on 2 "
        "files of ~300 lines; before → after the layout change)",
        f"≥ {TARGET_SHARE:.0%} cached",
        f"files unedited **{kept['after']['share']:.0%}** (before {kept['before']['share']:.0%}); "
        f"edits applied **{applied['after']['share']:.0%}** (before {applied['before']['share']:.0%})",
        verdict,
    )


def section(b7: dict[str, Any]) -> list[str]:
    s = b7.get("settings", {})
    out = [
        f"## B7: the prefix cache (run {b7.get('when', '?')})",
        "",
        f"A scripted session of {b7['actions']} actions (explain, refactor, fix, document, ask: two of each) on two "
        "generated files (`bench/b7_sources.py`: `orders.py`, ~290 lines of Python, and `queue.ts`, ~300 lines of "
        "TypeScript), run through the CLI's request path (`core.request.prepare` → `core.pipeline.run_job` with a "
        "real `kimi.http.KimiClient` → `core.outputs.place`) against a fresh fake API. The fake's `cached_tokens` "
        "is the longest prefix of the prompt that the same key sent to the same model in the last 5 minutes (4 "
        "characters a token, nothing under 256 tokens). **Before** is the prompt code of "
        f"`{b7['before_rev']}`: a system prompt per task ending in its `Task:` line, then the file's name and "
        f"{s.get('contextLines', 20)} lines around the selection. **After** is this tree's: one system prompt, then "
        "the whole file first in the user message (it is at most "
        f"`kimi.fileContextTokens` = {s.get('fileContextTokens', 8000):,} tokens), then the task; as in the editor, "
        "once an edit has changed a file, later prompts send the file as the earlier ones did (their cached "
        "prefix) and the changes since as a unified diff after it (`core.context`). Each runs with "
        "the files unedited (edits previewed and declined, or `kimi-lsp run` without `--apply`) and with every "
        "edit applied (6 of the 10 actions edit). Costs are at kimi-k2.5's prices (USD per million: cache hit "
        "0.10, miss 0.60, output 3.00), computed from the usage.",
        "",
        "| | unedited: before | unedited: after | edits applied: before | edits applied: after |",
        "|---|---|---|---|---|",
    ]
    runs = [b7["kept"]["before"], b7["kept"]["after"], b7["applied"]["before"], b7["applied"]["after"]]

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    out += [
        row(f"prompt tokens, all {b7['actions']} actions", lambda r: f"{r['prompt_tokens']:,}"),
        row("of which cached", lambda r: f"{r['cached_tokens']:,}"),
        row("cached share", lambda r: f"**{r['share']:.1%}**"),
        row("prompt tokens at the miss price", lambda r: f"{r['prompt_tokens'] - r['cached_tokens']:,}"),
        row("output tokens (the fake's reasoning and answers)", lambda r: f"{r['completion_tokens']:,}"),
        row("prompt cost", lambda r: _usd(r["cost_usd"] - r["completion_tokens"] * PRICE["output"] / 1e6)),
        row("session cost (prompt + output)", lambda r: _usd(r["cost_usd"])),
        row("session cost with no cache", lambda r: _usd(r["cost_without_cache_usd"])),
        row("lines of the file the model saw, per action", lambda r: r["seen"]),
        row("chat requests", lambda r: str(r["chat_requests"])),
        "",
        "Per action, prompt tokens / cached tokens:",
        "",
        "| # | file | action | lines | unedited: before | unedited: after | edits applied: before | edits "
        "applied: after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, rows in enumerate(zip(*(r["rows"] for r in runs)), 1):
        ra = rows[3]
        edited = " (edits)" if ra["edited"] else ""
        cells = " | ".join(f"{r['prompt_tokens']:,} / {r['cached_tokens']:,}" for r in rows)
        out.append(
            f"| {i} | {ra['file']} | {ra['action']}{edited} | {ra['lines'][0]}–{ra['lines'][1]} of "
            f"{ra['file_lines']} | {cells} |"
        )
    return out


def _print(b7: dict[str, Any]) -> None:
    print("\n".join(section(b7)))
    print()
    print("| " + " | ".join(table_row(b7)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session", nargs=3, metavar=("BASE_URL", "FOLDER", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--before-rev", default=BEFORE_REV, help=f"the revision measured as before ({BEFORE_REV})")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.session:  # inside the session's process
        base_url, folder, mode = args.session
        print(json.dumps(asyncio.run(session(base_url, Path(folder), apply=mode == "apply"))))
        return 0
    logging.basicConfig(level=logging.ERROR)
    b7 = asyncio.run(bench(args.before_rev))
    if args.write:
        save(b7)
    _print(b7)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
