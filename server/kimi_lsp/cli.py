"""The `kimi-lsp` command: the language server (default), and `check`, `run`, `fake-api` for the terminal.

`run` prepares, runs and places a request with the same core functions the editor uses (core.request.prepare,
core.pipeline.run_job, core.outputs.place); only the sink differs.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import ipaddress
import json
import logging
import re
import sys
from pathlib import Path
from typing import Optional

from kimi_lsp import __version__

OFFLINE_NOTE = (
    "offline: answers come from kimi-lsp's bundled stand-in for the Moonshot API, not from Kimi. "
    "Set a key and drop --offline for real answers."
)
OFFLINE_KEY = "sk-fake-valid-key"
LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".lua": "lua",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".java": "java",
    ".sh": "shellscript",
    ".rb": "ruby",
    ".html": "html",
    ".css": "css",
    ".md": "markdown",
    ".tsx": "typescriptreact",
    ".jsx": "javascriptreact",
}


def setup_logging(level: str, log_file: Optional[str]) -> None:
    from kimi_lsp.redact import RedactingFilter

    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # on the handler: every logger's records pass it, pygls' included
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pygls logs every message at INFO; httpx logs every request at INFO. Keep both quiet.
    for noisy in ("pygls", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def serve(args: argparse.Namespace) -> int:
    from kimi_lsp.lsp.app import create_server

    if (args.tcp or args.ws) and not args.allow_remote and not _loopback(args.host):
        print(
            f"error: --host {args.host} is not a loopback address; whoever can reach it could drive the server "
            "with your API key. Add --allow-remote to listen there anyway.",
            file=sys.stderr,
        )
        return 2
    if args.tcp:
        from kimi_lsp.lsp.stdio import serve_tcp

        return serve_tcp(create_server, args.host, args.port)
    ls = create_server()
    if args.ws:
        ls.start_ws(args.host, args.port)
        return 0
    from kimi_lsp.lsp.stdio import serve as serve_stdio

    return serve_stdio(ls)


# -- the terminal pipeline ---------------------------------------------------------------------------------------


class TerminalSink:
    """Streams the answer to the terminal: content to `out`, reasoning dimmed to stderr."""

    def __init__(self, out, show_content: bool = True) -> None:
        self.out, self.show_content = out, show_content
        self._in_reasoning = False
        self._tty = sys.stderr.isatty()

    def sent(self) -> None:
        pass

    def status(self, text: str) -> None:
        print(f"[kimi] {text}…", file=sys.stderr, flush=True)

    def delta(self, kind: str, text: str) -> None:
        if kind == "reasoning":
            if not self._in_reasoning:
                print("[kimi] reasoning:", file=sys.stderr)
                self._in_reasoning = True
            sys.stderr.write(f"\033[2m{text}\033[0m" if self._tty else text)
            sys.stderr.flush()
            return
        if self._in_reasoning:
            print("\n[kimi] answer:", file=sys.stderr, flush=True)
            self._in_reasoning = False
        if self.show_content:
            self.out.write(text)
            self.out.flush()
        else:
            sys.stderr.write(text)
            sys.stderr.flush()


def _parse_target(target: str) -> tuple[Path, Optional[int], Optional[int]]:
    m = re.fullmatch(r"(.+?):(\d+)(?:-(\d+))?", target)
    if m and not Path(target).exists():
        a = int(m.group(2))
        return Path(m.group(1)), a, int(m.group(3) or a)
    return Path(target), None, None


class UsageError(Exception):
    """A mistake on the command line: said plainly, exit code 2."""


def _offsets(text: str, first: Optional[int], last: Optional[int]) -> tuple[int, int]:
    """Offsets of 1-based lines first..last, counted as the editor counts them (LSP's line breaks)."""
    from kimi_lsp.core.lines import split_lines

    if first is None:
        return 0, len(text)
    lines = split_lines(text)
    last = first if last is None else last
    if first < 1 or last < first:
        raise UsageError(f"lines {first}-{last}: give 1-based lines, the first not after the last")
    if last > len(lines):
        raise UsageError(f"lines {first}-{last}: the file has {len(lines)} line{'s' * (len(lines) != 1)}")
    start = sum(len(x) for x in lines[: first - 1])
    return start, start + sum(len(x) for x in lines[first - 1 : last])


async def _settings_and_key(args: argparse.Namespace, fake=None):
    from kimi_lsp.kimi.keys import KeyStore
    from kimi_lsp.settings import Settings, merge_settings

    raw: dict = {}
    if getattr(args, "settings", None):
        raw = json.loads(await asyncio.to_thread(Path(args.settings).read_text, encoding="utf-8"))
        raw = raw.get("kimi", raw)
    for name, value in (
        ("model", getattr(args, "model", None)),
        ("region", getattr(args, "region", None)),
        ("baseUrl", getattr(args, "base_url", None)),
    ):
        if value:
            raw[name] = value
    settings, problems = merge_settings(raw, Settings())
    for p in problems:
        _say(f"warning: {p}", file=sys.stderr)
    if fake is not None:
        settings = settings.model_copy(update={"base_url": fake.base_url})
        return settings, OFFLINE_KEY, "offline stand-in"
    key, source = await KeyStore().get(settings.region)  # stripped, and registered for redaction
    return settings, key, source


def _say(text: str, file=None) -> None:
    """`check` prints what endpoints answered: never a key they echoed."""
    from kimi_lsp.redact import redact

    print(redact(text), file=file)


async def _start_fake(args: argparse.Namespace):
    if not args.offline:
        return None
    from kimi_lsp.fake import FakeMoonshot

    fake = FakeMoonshot(token_delay=0.01)
    await fake.start()
    print(f"[kimi] {OFFLINE_NOTE}", file=sys.stderr)
    return fake


async def run_command(args: argparse.Namespace) -> int:
    from kimi_lsp import errors
    from kimi_lsp.core.actions import BUILTIN_ACTIONS, custom_action
    from kimi_lsp.core.edits import apply_edits
    from kimi_lsp.core.lines import split_lines
    from kimi_lsp.core.outputs import place
    from kimi_lsp.core.pipeline import run_job
    from kimi_lsp.core.request import Snapshot, prepare, toolbox
    from kimi_lsp.core.tools import Sandbox
    from kimi_lsp.kimi.http import ClientPool, KimiClient
    from kimi_lsp.kimi.models import BUILTIN_MODELS, resolve
    from kimi_lsp.kimi.pricing import currency_for, describe

    path, first, last = _parse_target(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        print(f"error: cannot read {path}: no such file", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    try:
        start, end = _offsets(text, first, last)
    except UsageError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    fake = await _start_fake(args)
    pool = ClientPool()
    try:
        settings, key, _ = await _settings_and_key(args, fake)
        spec = BUILTIN_ACTIONS.get(args.action) or next(
            (custom_action(a) for a in settings.actions if a.id == args.action), None
        )
        if spec is None:
            custom = ", ".join(a.id for a in settings.actions) or "none in --settings"
            print(
                f"error: unknown action {args.action!r}; built-in: {', '.join(BUILTIN_ACTIONS)}; custom: {custom}",
                file=sys.stderr,
            )
            return 2
        model = resolve(settings.model, settings.custom_models, currency=currency_for(settings))
        sandbox = Sandbox([Path.cwd()], deny=tuple(settings.tool_deny))  # the same read-only tools, rooted here
        snap = Snapshot(
            text=text,
            start=start,
            end=end,
            language=LANGUAGES.get(path.suffix, ""),
            path=str(path),
            folder=path.resolve().parent,
            instruction=args.instruction or "",
        )
        sink = TerminalSink(sys.stdout, show_content=not spec.edits)
        try:
            job = await prepare(spec, snap, settings, model, sandbox, BUILTIN_MODELS.values())
            tools, notice = toolbox(settings, model, sandbox)
            for _, text in [*job.notices, *([notice] if notice is not None else [])]:
                print(f"[kimi] {text.removeprefix('Kimi: ')}", file=sys.stderr)
            outcome = await run_job(job, KimiClient(pool, settings, key), sink, BUILTIN_MODELS.values(), tools)
        except errors.KimiError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        if not spec.edits:
            print()
        else:
            new_text = apply_edits(text, place(job, outcome.new_code or ""))
            sys.stderr.write("\n")
            diff = difflib.unified_diff(split_lines(text), split_lines(new_text), f"a/{path}", f"b/{path}")
            sys.stdout.writelines(diff)
            if args.apply:
                path.write_text(new_text, encoding="utf-8")
                print(f"[kimi] applied to {path}", file=sys.stderr)
        print(
            f"[kimi] {outcome.model} · {describe(outcome.usage, outcome.cost, outcome.web_searches)} · "
            f"{outcome.elapsed_ms:,} ms" + (" · offline stand-in, not Kimi" if fake else ""),
            file=sys.stderr,
        )
        return 0
    finally:
        await pool.aclose()
        if fake is not None:
            await fake.stop()


async def check_command(args: argparse.Namespace) -> int:
    from kimi_lsp import errors
    from kimi_lsp.kimi.http import ClientPool, KimiClient
    from kimi_lsp.kimi.pricing import currency_for, money

    fake = await _start_fake(args)
    pool = ClientPool()
    problems = 0
    try:
        settings, key, source = await _settings_and_key(args, fake)
        _say(f"key source : {source or 'none'}")
        _say(f"region     : {settings.region}")
        _say(f"base URL   : {settings.effective_base_url}")
        _say(f"model      : {settings.model}")
        client = KimiClient(pool, settings, key)
        try:
            models = [m["id"] for m in await client.list_models()]
            _say("key        : accepted")
            if settings.model in models:
                _say(f"model      : {settings.model} is available")
            else:
                problems += 1
                _say(
                    f"model      : PROBLEM: {settings.model} is not available to this account. "
                    f"Available: {', '.join(models)}. Fix: set kimi.model to one of them."
                )
            balance = await client.balance()
            _say(
                f"balance    : {money(balance, currency_for(settings))}"
                + ("  PROBLEM: top up the account, chat will fail" if balance <= 0 else "")
            )
            problems += balance <= 0
            _say(
                "spent      : nothing yet in this process (each `kimi-lsp run` prints its cost; the editor's "
                "kimi.status adds up its session)"
            )
        except errors.NoApiKey as exc:
            problems += 1
            _say(f"key        : PROBLEM: {exc}")
        except errors.KimiError as exc:
            problems += 1
            _say(f"key        : PROBLEM: {exc}")
        if fake:
            _say(f"note       : {OFFLINE_NOTE}")
        return 1 if problems else 0
    finally:
        await pool.aclose()
        if fake is not None:
            await fake.stop()


def _read_key(args: argparse.Namespace) -> str:
    """The key from stdin when piped (`echo $KEY | kimi-lsp set-key`), else a hidden prompt; never an argument
    (it would stay in the shell history and the process list)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    import getpass

    return getpass.getpass(f"Moonshot API key for the {args.region or 'international'} region: ").strip()


async def set_key_command(args: argparse.Namespace) -> int:
    """Stores a key in the OS keychain (as kimi.setApiKey does from an editor), after checking it with GET /models."""
    from kimi_lsp import errors
    from kimi_lsp.kimi.http import ClientPool, KimiClient
    from kimi_lsp.kimi.keys import KeychainUnavailable, KeyStore

    key = _read_key(args)
    if not key:
        print("error: no key given (paste it at the prompt, or pipe it on stdin)", file=sys.stderr)
        return 2
    settings, _, _ = await _settings_and_key(args)
    pool = ClientPool()
    try:
        await KimiClient(pool, settings, key).list_models()
    except errors.KimiError as exc:
        print(f"error: the key was not stored: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.aclose()
    try:
        await KeyStore().set(settings.region, key)
    except (KeychainUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"stored: {settings.effective_base_url} accepted the key; it is in the OS keychain for the "
        f"{settings.region} region (service kimi-lsp)."
    )
    return 0


async def clear_key_command(args: argparse.Namespace) -> int:
    from kimi_lsp.kimi.keys import KeychainUnavailable, KeyStore

    region = args.region or "international"
    try:
        cleared = await KeyStore().clear(region)
    except KeychainUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"removed the {region} key from the OS keychain." if cleared else f"no {region} key was stored.")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kimi-lsp", description="Kimi language server (stdio by default).")
    p.add_argument("--version", action="version", version=f"kimi-lsp {__version__}")
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument(
        "--tcp",
        action="store_true",
        help="listen on TCP for debugging: a fresh server per connection, which must speak LSP framing "
        "and send initialize first",
    )
    p.add_argument("--ws", action="store_true", help="listen on WebSocket (debugging)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address for --tcp/--ws (default 127.0.0.1); only loopback addresses unless --allow-remote",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --tcp/--ws listen on a non-loopback --host (anyone who reaches it can use your key)",
    )
    p.add_argument("--port", type=int, default=2087)
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="cmd")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", help="model id (default: kimi.model, kimi-k2.5)")
        sp.add_argument("--region", choices=["international", "china"])
        sp.add_argument("--base-url", help="override the region's base URL")
        sp.add_argument("--settings", help="a JSON file with the kimi settings section")
        sp.add_argument("--offline", action="store_true", help="use the bundled fake Moonshot server (no key needed)")

    c = sub.add_parser("check", help="check the key, region, model and balance")
    common(c)
    r = sub.add_parser("run", help="run one action on a file and stream the answer")
    r.add_argument("action", help="explain, refactor, fix, document, ask, or a custom action id")
    r.add_argument("file", help="FILE or FILE:START-END (1-based lines)")
    r.add_argument("--instruction", help="refactor instruction or question")
    r.add_argument("--apply", action="store_true", help="write the edit to the file")
    common(r)
    k = sub.add_parser("set-key", help="store an API key in the OS keychain (read from a prompt or stdin, verified)")
    for sp in (k, sub.add_parser("clear-key", help="remove the region's API key from the OS keychain")):
        sp.add_argument("--region", choices=["international", "china"])
    k.add_argument("--base-url", help="verify against this base URL instead of the region's")
    f = sub.add_parser("fake-api", help="serve the fake Moonshot API on loopback", add_help=False)
    f.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fake-api"]:
        from kimi_lsp.fake import main as fake_main

        return fake_main(argv[1:])
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_file)
    try:
        if args.cmd == "check":
            return asyncio.run(check_command(args))
        if args.cmd == "run":
            return asyncio.run(run_command(args))
        if args.cmd == "set-key":
            return asyncio.run(set_key_command(args))
        if args.cmd == "clear-key":
            return asyncio.run(clear_key_command(args))
        return serve(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
