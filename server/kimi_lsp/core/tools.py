"""Read-only tools the model may call, and the sandbox that keeps them inside the workspace.

Every path any tool touches goes through one resolve-and-check (`Sandbox.resolve`): the real path must lie in a
workspace folder, and the secret, version-control, .gitignore and kimi.toolDeny rules (case-folded) hold for the
path as named and as resolved, so a link can neither lead out nor onto a refused file. A read then opens only
the regular file that was checked (`open_regular`). Reads are capped; open editor buffers win over the disk so
unsaved changes count. Nothing here writes, runs or fetches. Disk work is synchronous and meant for a worker
thread (ToolBox.run uses asyncio.to_thread), bounded by a `Budget` it checks between files.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import json
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pathspec import GitIgnoreSpec

from kimi_lsp.kimi.sse import ToolCall
from kimi_lsp.redact import redact

READ_LIMIT = 100_000  # bytes a tool may read from one file
LIST_LIMIT = 200  # entries list_files returns
SEARCH_LIMIT = 100  # matches search_text returns
SCAN_FILES = 20_000  # directory entries one list_files/search_text call may look at
SCAN_CHARS = 20_000_000  # characters (about bytes) one search_text call may read
CALL_SECONDS = 15.0  # wall time of one tool call
PATTERN_LIMIT = 1_000  # characters of a search pattern or a glob
IGNORE_FILE_LIMIT = 1_000_000
CALLS_PER_ROUND = 16  # tool calls run per model reply; the rest are answered with an error

# Gitignore syntax, matched case-folded against workspace-relative paths (a name without '/' matches at any
# depth, and a matching folder refuses everything in it).
SECRET_PATTERNS = [
    # environment files, keys and certificates, password stores
    ".env*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ppk",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.keychain",
    "*.keychain-db",
    "login.keychain*",
    ".password-store/",
    "keyrings/",
    ".gnupg/",
    # tokens of package managers, git and databases
    ".netrc",
    "_netrc",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".gem/",
    ".git-credentials",
    ".pgpass",
    ".my.cnf",
    ".htpasswd",
    ".vault-token",
    "credentials",
    "credentials.*",
    "*.secret",
    "secrets.*",
    "client_secret*.json",
    # shell start-up and history files (where `export MOONSHOT_API_KEY=…` lives)
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".kshrc",
    ".cshrc",
    ".tcshrc",
    ".xprofile",
    "*_history",
    ".*history",
    ".histfile",
    ".lesshst",
    ".viminfo",
    "**/.config/fish/",
    "config.fish",
    "fish_variables",
    # cloud, container and SSH credentials
    ".ssh/",
    ".aws/",
    ".azure/",
    ".kube/",
    "kubeconfig*",
    "**/.docker/config.json",
    "**/.config/gcloud/",
    "application_default_credentials.json",
    "**/.config/gh/hosts.yml",
    "**/.config/hub",
    ".s3cfg",
    ".boto",
    ".terraformrc",
    "terraform.rc",
    "*.tfvars",
    "*.tfvars.json",
    "*.tfstate",
    "*.tfstate.*",
]
_SECRETS = GitIgnoreSpec.from_lines(p.casefold() for p in SECRET_PATTERNS)
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "_darcs"})
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


class ToolError(Exception):
    pass


@dataclass
class Budget:
    """The work one tool call may still do; the worker checks it between files and stops with `reason` set."""

    deadline: float = math.inf  # time.monotonic()
    files: int = SCAN_FILES
    chars: int = SCAN_CHARS
    stop: threading.Event = field(default_factory=threading.Event)  # set when the request is cancelled
    reason: str = ""

    def exhausted(self) -> bool:
        if not self.reason:
            if self.stop.is_set():
                self.reason = "the request was cancelled"
            elif time.monotonic() >= self.deadline:
                self.reason = "out of time"
            elif self.files <= 0:
                self.reason = "too many files; narrow the glob"
            elif self.chars <= 0:
                self.reason = "read as much as one call may; narrow the glob"
        return bool(self.reason)


def open_regular(path: Path, checked: os.stat_result, shown: str) -> int:
    """A read-only descriptor for exactly the file that was checked: a link at the last component is not
    followed (O_NOFOLLOW), a pipe or device does not block (O_NONBLOCK), and anything but that regular file
    (another inode, say through a directory swapped for a link) is refused."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise ToolError(f"error: '{shown}' could not be opened ({exc.strerror or 'failed'})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"error: '{shown}' is not a regular file")
        if (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
            raise ToolError(f"error: '{shown}' changed while it was being read")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_small(path: Path, limit: int = IGNORE_FILE_LIMIT) -> Optional[str]:
    """A short regular file's text (.gitignore and the like), or None; never blocks on a pipe or follows a link."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with os.fdopen(open_regular(path, st, path.name), "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except (OSError, ToolError):
        return None


class Sandbox:
    def __init__(
        self,
        roots: list[Path],
        open_docs: Optional[dict[str, str] | Callable[[str], Optional[str]]] = None,
        deny: tuple[str, ...] = (),
        read_limit: int = READ_LIMIT,
    ) -> None:
        given = [Path(os.path.abspath(r)) for r in roots if r]
        self.roots = [Path(os.path.realpath(r)) for r in given]
        self._named_roots = list(zip(given, self.roots)) + [(r, r) for r in self.roots]
        if isinstance(open_docs, dict):
            docs = {os.path.realpath(p): t for p, t in open_docs.items()}
            open_docs = docs.get
        self._open_doc: Callable[[str], Optional[str]] = open_docs or (lambda _path: None)
        self.deny = [d.casefold() for d in deny]
        self.read_limit = read_limit
        self._ignores: dict[Path, Optional[GitIgnoreSpec]] = {}

    # -- paths -------------------------------------------------------------------------------------------------
    def resolve(self, path: str, base: Optional[Path] = None) -> Path:
        """The real path of a workspace file the tools may read, or ToolError saying why not."""
        if not self.roots:
            raise ToolError("error: no workspace folder is open, so no files can be read")
        if not isinstance(path, str) or not path.strip():
            raise ToolError("error: a path is required")
        shown = path.strip()
        if "\0" in shown or len(shown) > 4096:
            raise ToolError("error: that is not a usable path")
        given = Path(shown)
        if ".." in given.parts:
            raise ToolError(f"error: '{shown}' uses '..'; paths must stay inside the workspace")
        return self._check(given if given.is_absolute() else (base or self.roots[0]) / given, shown)[0]

    def _check(self, candidate: Path, shown: str) -> tuple[Path, Optional[os.stat_result]]:
        """The one resolve-and-check: (real path, its lstat or None when missing)."""
        real = Path(os.path.realpath(candidate))
        root = self.root_of(real)
        if root is None:
            raise ToolError(f"error: '{shown}' is outside the workspace")
        try:
            st: Optional[os.stat_result] = os.lstat(real)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise ToolError(f"error: '{shown}' could not be read ({exc.strerror or 'failed'})") from None
        is_dir = st is not None and stat.S_ISDIR(st.st_mode)
        rel = real.relative_to(root).as_posix() if real != root else ""
        named = self._named(candidate)
        for where, what in [(root, rel)] + ([named] if named != (root, rel) else []):
            reason = self._refusal(what, where, is_dir)
            if reason:
                raise ToolError(f"error: '{shown}' {reason} and may not be read")
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise ToolError(f"error: '{shown}' is a symbolic link that leads nowhere")
        if st is not None and not (stat.S_ISREG(st.st_mode) or is_dir):
            raise ToolError(f"error: '{shown}' is not a regular file (a pipe, socket or device)")
        return real, st

    def _named(self, candidate: Path) -> tuple[Optional[Path], str]:
        """The path as named, relative to the root it lies in lexically; else absolute (name rules only)."""
        plain = os.path.abspath(candidate)
        for given, real in self._named_roots:
            prefix = str(given).rstrip("/") + "/"
            if plain == str(given) or plain.startswith(prefix):
                return real, plain[len(prefix) :] if plain != str(given) else ""
        return None, plain.lstrip("/")

    def root_of(self, real: Path) -> Optional[Path]:
        for root in self.roots:
            if real == root or root in real.parents:
                return root
        return None

    def relative(self, real: Path) -> str:
        """A workspace-relative name; never an absolute path, not even for a path outside the workspace."""
        root = self.root_of(real)
        return real.relative_to(root).as_posix() if root else real.name

    def _refusal(self, rel: str, root: Optional[Path], is_dir: bool) -> Optional[str]:
        """Why a '/'-separated path (relative to `root`, or absolute without one) is refused, or None."""
        folded = rel.casefold()
        parts = [p for p in folded.split("/") if p]
        if not parts:
            return None
        if VCS_DIRS.intersection(parts):
            return "is inside version-control metadata"
        if _SECRETS.match_file(folded + ("/" if is_dir else "")):
            return "looks like a secret (keys, credentials, .env, shell or cloud configuration)"
        if any(
            fnmatch.fnmatchcase(folded, pat) or any(fnmatch.fnmatchcase(p, pat) for p in parts) for pat in self.deny
        ):
            return "matches kimi.toolDeny"
        if root is not None and self._ignored(root, rel, is_dir):
            return "is ignored by .gitignore (or .git/info/exclude)"
        return None

    def _ignored(self, root: Path, rel: str, is_dir: bool) -> bool:
        parts = [p for p in rel.split("/") if p]
        for depth in range(len(parts)):
            spec = self._spec(root, root.joinpath(*parts[:depth]))
            if spec is not None and spec.match_file("/".join(parts[depth:]).casefold() + ("/" if is_dir else "")):
                return True
        return False

    def _spec(self, root: Path, folder: Path) -> Optional[GitIgnoreSpec]:
        if folder not in self._ignores:
            # .git/info/exclude first: a folder's .gitignore overrides it, as in git
            texts = [_read_small(root / ".git" / "info" / "exclude")] if folder == root else []
            texts.append(_read_small(folder / ".gitignore"))
            lines = [line.casefold() for text in texts if text for line in text.splitlines()]
            self._ignores[folder] = GitIgnoreSpec.from_lines(lines) if lines else None
        return self._ignores[folder]

    def allowed(self, real: Path) -> bool:
        try:
            self._check(real, real.name)
            return True
        except ToolError:
            return False

    # -- reading -----------------------------------------------------------------------------------------------
    def _recheck(self, real: Path) -> tuple[str, Optional[os.stat_result]]:
        """Checks a resolved path again right before it is read: a link or file swapped in since is refused."""
        shown = self.relative(real)
        again, st = self._check(real, shown)
        if again != real:
            raise ToolError(f"error: '{shown}' changed while it was being read")
        return shown, st

    @staticmethod
    def _require_file(shown: str, st: Optional[os.stat_result]) -> os.stat_result:
        if st is None:
            raise ToolError(f"error: '{shown}' does not exist ({os.strerror(errno.ENOENT)})")
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"error: '{shown}' is a folder, not a file")
        return st

    def read_text(self, real: Path) -> str:
        """An open buffer's text (unsaved changes count), else the file, capped at read_limit bytes."""
        shown, st = self._recheck(real)
        text = self._open_doc(str(real))
        if text is not None:
            return text
        with os.fdopen(open_regular(real, self._require_file(shown, st), shown), "rb") as fh:
            data = fh.read(self.read_limit + 1)
        if b"\0" in data[:8192]:
            raise ToolError(f"error: '{shown}' is a binary file")
        text = data[: self.read_limit].decode("utf-8", errors="replace")
        if len(data) > self.read_limit:
            text += f"\n[… truncated at {self.read_limit} bytes]"
        return text

    def read_bytes(self, real: Path, limit: int) -> bytes:
        shown, st = self._recheck(real)
        st = self._require_file(shown, st)
        if st.st_size > limit:
            raise ToolError(f"'{shown}' is {st.st_size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit")
        with os.fdopen(open_regular(real, st, shown), "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ToolError(f"'{shown}' grew past the {limit / 1e6:.1f} MB limit while it was read")
        return data

    def walk(self, pattern: str, budget: Optional[Budget] = None) -> Iterator[Path]:
        """Allowed regular files whose workspace-relative path matches the glob (`**/` may match nothing), each
        through the same resolve-and-check as a named path. Directory links are not entered; file links are
        yielded as their (checked) target, once. Stops when the budget runs out."""
        budget = budget or Budget()
        pattern = pattern or "**/*"
        pats = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        seen: set[Path] = set()
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: a dir link is not descended
                here = Path(dirpath)
                kept = []
                for d in sorted(dirnames):
                    if budget.exhausted():
                        return
                    budget.files -= 1
                    if not os.path.islink(here / d) and self.allowed(here / d):
                        kept.append(d)
                dirnames[:] = kept
                for name in sorted(filenames):
                    if budget.exhausted():
                        return
                    budget.files -= 1
                    rel = (here / name).relative_to(root).as_posix()
                    if not any(fnmatch.fnmatch(rel, p) or ("/" not in p and fnmatch.fnmatch(name, p)) for p in pats):
                        continue
                    try:
                        real, st = self._check(here / name, rel)
                    except ToolError:
                        continue
                    if st is not None and stat.S_ISREG(st.st_mode) and real not in seen:
                        seen.add(real)
                        yield real


def _search_patterns(pattern: str) -> tuple[Any, Any]:
    """(per line, whole text) RE2 regexes, linear in the text whatever the pattern; a pattern RE2 cannot run
    (look-arounds, back-references, a syntax error) is searched for literally."""
    import re2  # loaded on first search, not at start-up

    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern on stderr
    options.never_capture = True
    try:
        return re2.compile(pattern, options), re2.compile(f"(?m){pattern}", options)
    except (re2.error, UnicodeError):
        options.literal = True
        try:
            literal = re2.compile(pattern, options)
        except (re2.error, UnicodeError):
            raise ToolError("error: the pattern cannot be searched for") from None
        return literal, literal


@dataclass
class ToolBox:
    """The tools offered to the model for one request, with the editor state they read."""

    sandbox: Sandbox
    diagnostics: dict[str, list[str]] = field(default_factory=dict)  # real path -> "line N: message"
    base: Optional[Path] = None  # the document's folder: relative paths resolve from the workspace root
    web_search: bool = False
    calls_per_round: int = CALLS_PER_ROUND  # run_job answers the calls past this with an error, unrun

    def specs(self) -> list[dict[str, Any]]:
        def fn(name: str, desc: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
            return {
                "type": "function",
                "function": {
                    "name": name,
                    "description": desc,
                    "parameters": {"type": "object", "properties": props, "required": required},
                },
            }

        path = {"type": "string", "description": "Path relative to the workspace root"}
        glob = {"type": "string", "description": "Glob relative to the workspace root, e.g. **/*.py"}
        specs = [
            fn(
                "read_file",
                "Read lines of a workspace file (1-based, inclusive).",
                {"path": path, "startLine": {"type": "integer"}, "endLine": {"type": "integer"}},
                ["path"],
            ),
            fn("list_files", "List workspace files matching a glob.", {"glob": glob}, []),
            fn(
                "search_text",
                "Search workspace files for a regular expression.",
                {"pattern": {"type": "string"}, "glob": glob},
                ["pattern"],
            ),
            fn("get_diagnostics", "Problems the editor reported for a file.", {"path": path}, ["path"]),
            fn("get_document_symbols", "An outline (classes, functions) of a file.", {"path": path}, ["path"]),
        ]
        if self.web_search:
            specs.append({"type": "builtin_function", "function": {"name": "$web_search"}})
        return specs

    @staticmethod
    def args(call: ToolCall) -> dict[str, Any]:
        try:
            value = json.loads(call.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def describe(self, call: ToolCall) -> str:
        a = {k: v[:80] if isinstance(v, str) else v for k, v in self.args(call).items()}  # a status line, short
        if call.name == "read_file":
            lines = f":{a.get('startLine', 1)}-{a['endLine']}" if a.get("endLine") else ""
            return f"reading {a.get('path', '?')}{lines}"
        if call.name == "list_files":
            return f"listing {a.get('glob', '**/*')}"
        if call.name == "search_text":
            return f"searching '{a.get('pattern', '')}' in {a.get('glob', '**/*')}"
        if call.name == "get_diagnostics":
            return f"reading the problems in {a.get('path', '?')}"
        if call.name == "get_document_symbols":
            return f"outlining {a.get('path', '?')}"
        if call.name == "$web_search":
            return f"searching the web for '{a.get('query', '')}'"
        return f"calling {call.name[:80]}"

    async def run(self, call: ToolCall, deadline: Optional[float] = None) -> str:
        """The result the model gets: redacted, and naming no absolute path. The worker stops between files
        once `deadline` (time.monotonic()) or CALL_SECONDS pass, or once this coroutine is cancelled."""
        if call.name == "$web_search":
            return redact(call.arguments)  # Moonshot's protocol: hand the arguments back; the search runs on their side
        handler: Optional[Callable[[dict[str, Any], Budget], str]] = {
            "read_file": self._read_file,
            "list_files": self._list_files,
            "search_text": self._search_text,
            "get_diagnostics": self._diagnostics,
            "get_document_symbols": self._symbols,
        }.get(call.name)
        if handler is None:
            return redact(f"error: unknown tool '{call.name[:80]}'")
        budget = Budget(deadline=min(deadline or math.inf, time.monotonic() + CALL_SECONDS))
        try:
            result = await asyncio.to_thread(handler, self.args(call), budget)
        except ToolError as exc:
            result = self._scrub(str(exc))
        except OSError as exc:  # the OS text names the absolute path: give the reason only
            result = f"error: {exc.strerror or type(exc).__name__}"
        except (ValueError, TypeError, ArithmeticError) as exc:
            result = self._scrub(f"error: {type(exc).__name__}: {exc}")
        finally:
            budget.stop.set()  # a cancelled call's worker stops at the next file
        return redact(result)

    def _scrub(self, text: str) -> str:
        """Error text with the workspace folders made relative and the home folder shortened to ~."""
        for given, real in self.sandbox._named_roots:
            for root in sorted({str(given), str(real)}, key=len, reverse=True):
                if len(root) > 1:
                    text = text.replace(root + "/", "").replace(root, ".")
        home = os.path.expanduser("~")
        return text.replace(home, "~") if len(home) > 1 else text

    # -- the tools (worker thread) -------------------------------------------------------------------------------
    def _read_file(self, a: dict[str, Any], budget: Budget) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        lines = self.sandbox.read_text(real).splitlines()
        start = max(1, int(a.get("startLine") or 1))
        end = min(len(lines), int(a.get("endLine") or start + 399))
        body = "\n".join(f"{n}: {lines[n - 1]}" for n in range(start, end + 1))
        return f"{self.sandbox.relative(real)} (lines {start}-{end} of {len(lines)})\n{body}"

    @staticmethod
    def _glob(a: dict[str, Any]) -> str:
        glob = str(a.get("glob") or "**/*")
        if len(glob) > PATTERN_LIMIT:
            raise ToolError(f"error: the glob is longer than {PATTERN_LIMIT} characters")
        return glob

    def _list_files(self, a: dict[str, Any], budget: Budget) -> str:
        out = []
        for real in self.sandbox.walk(self._glob(a), budget):
            out.append(self.sandbox.relative(real))
            if len(out) >= LIST_LIMIT:
                out.append(f"[… more than {LIST_LIMIT} files]")
                break
        if budget.reason:
            out.append(f"[… stopped early: {budget.reason}]")
        return "\n".join(out) or "no matching files"

    def _search_text(self, a: dict[str, Any], budget: Budget) -> str:
        pattern = str(a.get("pattern") or "")
        if not pattern:
            raise ToolError("error: a pattern is required")
        if len(pattern) > PATTERN_LIMIT:
            raise ToolError(f"error: the pattern is longer than {PATTERN_LIMIT} characters")
        per_line, whole = _search_patterns(pattern)
        hits = []
        for real in self.sandbox.walk(self._glob(a), budget):
            try:
                text = self.sandbox.read_text(real)
                budget.chars -= len(text)
                if not whole.search(text):  # most files do not match: one linear pass, no line splitting
                    continue
                lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if per_line.search(line)]
            except (ToolError, UnicodeError):  # unreadable, or a buffer with lone surrogates
                continue
            for n, line in lines:
                hits.append(f"{self.sandbox.relative(real)}:{n}: {line.strip()[:200]}")
                if len(hits) >= SEARCH_LIMIT:
                    return "\n".join(hits + [f"[… stopped at {SEARCH_LIMIT} matches]"])
        if budget.reason:
            hits.append(f"[… stopped early: {budget.reason}]")
        return "\n".join(hits) or "no matches"

    def _diagnostics(self, a: dict[str, Any], budget: Budget) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        found = self.diagnostics.get(str(real), [])
        return "\n".join(found) if found else f"no problems reported for {self.sandbox.relative(real)}"

    _SYMBOL = re.compile(
        r"^\s*(?:export\s+)?(?:pub(?:\(\w+\))?\s+)?(?:async\s+)?(?:local\s+)?"
        r"(def|class|function|func|fn|interface|struct|enum|trait|impl|type|module)\b.*"
    )

    def _symbols(self, a: dict[str, Any], budget: Budget) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        out = [
            f"{n}: {line.strip()[:160]}"
            for n, line in enumerate(self.sandbox.read_text(real).splitlines(), 1)
            if self._SYMBOL.match(line)
        ]
        return "\n".join(out) or "no symbols found"
