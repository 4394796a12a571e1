"""Read-only tools the model may call, and the sandbox that keeps them inside the workspace.

Every path resolves inside a workspace folder (no `..`, no symlink escapes, no outside absolute paths);
.gitignore'd and secret-looking files are refused with an error the model sees; reads are capped; open
editor buffers win over the disk so unsaved changes count. Nothing here writes, runs or fetches.
Disk work is synchronous and meant for a worker thread (ToolBox.run uses asyncio.to_thread).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from pathspec import GitIgnoreSpec

from .stream import ToolCall

READ_LIMIT = 100_000      # bytes a tool may read from one file
LIST_LIMIT = 200          # entries list_files returns
SEARCH_LIMIT = 100        # matches search_text returns
SECRET_NAMES = [".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.kdbx", "id_rsa*",
                "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.keychain", "*.keychain-db", "login.keychain*", ".netrc",
                ".npmrc", ".pypirc", ".git-credentials", "credentials", "credentials.*", "*.secret", "secrets.*"]
SKIP_DIRS = {".git", ".hg", ".svn"}


class ToolError(Exception):
    pass


class Sandbox:
    def __init__(self, roots: list[Path], open_docs: Optional[dict[str, str] | Callable[[str], Optional[str]]] = None,
                 deny: tuple[str, ...] = (), read_limit: int = READ_LIMIT) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots if r]
        if isinstance(open_docs, dict):
            docs = {os.path.realpath(p): t for p, t in open_docs.items()}
            open_docs = docs.get
        self._open_doc: Callable[[str], Optional[str]] = open_docs or (lambda _path: None)
        self.deny = list(deny)
        self.read_limit = read_limit
        self._ignores: dict[Path, Optional[GitIgnoreSpec]] = {}

    # -- paths -------------------------------------------------------------------------------------------------
    def resolve(self, path: str, base: Optional[Path] = None) -> Path:
        if not self.roots:
            raise ToolError("error: no workspace folder is open, so no files can be read")
        if not isinstance(path, str) or not path.strip():
            raise ToolError("error: a path is required")
        given = Path(path.strip())
        if ".." in given.parts:
            raise ToolError(f"error: '{path}' uses '..'; paths must stay inside the workspace")
        candidate = given if given.is_absolute() else (base or self.roots[0]) / given
        real = Path(os.path.realpath(candidate))
        root = self.root_of(real)
        if root is None:
            raise ToolError(f"error: '{path}' is outside the workspace")
        self.check_allowed(real, root)
        return real

    def root_of(self, real: Path) -> Optional[Path]:
        for root in self.roots:
            if real == root or root in real.parents:
                return root
        return None

    def relative(self, real: Path) -> str:
        root = self.root_of(real)
        return real.relative_to(root).as_posix() if root else str(real)

    def check_allowed(self, real: Path, root: Path) -> None:
        rel = real.relative_to(root).as_posix() if real != root else ""
        parts = rel.split("/") if rel else []
        if any(p in SKIP_DIRS for p in parts):
            raise ToolError(f"error: '{rel}' is inside version-control metadata and may not be read")
        for name in parts:
            if any(fnmatch.fnmatch(name, pat) for pat in SECRET_NAMES):
                raise ToolError(f"error: '{rel}' looks like a secret (keys, credentials, .env) and may not be read")
        for pat in self.deny:
            if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
                raise ToolError(f"error: '{rel}' matches kimi.toolDeny and may not be read")
        if rel and self._ignored(root, rel, real.is_dir()):
            raise ToolError(f"error: '{rel}' is ignored by .gitignore and may not be read")

    def _ignored(self, root: Path, rel: str, is_dir: bool) -> bool:
        parts = rel.split("/")
        for depth in range(len(parts)):
            folder = root.joinpath(*parts[:depth])
            spec = self._spec(folder)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            if spec.match_file(sub):
                return True
        return False

    def _spec(self, folder: Path) -> Optional[GitIgnoreSpec]:
        if folder not in self._ignores:
            try:
                lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
                self._ignores[folder] = GitIgnoreSpec.from_lines(lines)
            except OSError:
                self._ignores[folder] = None
        return self._ignores[folder]

    def allowed(self, real: Path) -> bool:
        root = self.root_of(real)
        if root is None:
            return False
        try:
            self.check_allowed(real, root)
            return True
        except ToolError:
            return False

    # -- reading -----------------------------------------------------------------------------------------------
    def read_text(self, real: Path) -> str:
        """An open buffer's text (unsaved changes count), else the file, capped at read_limit bytes."""
        text = self._open_doc(str(real))
        if text is not None:
            return text
        if not real.is_file():
            raise ToolError(f"error: '{self.relative(real)}' does not exist or is not a file")
        with open(real, "rb") as fh:
            data = fh.read(self.read_limit + 1)
        if b"\0" in data[:8192]:
            raise ToolError(f"error: '{self.relative(real)}' is a binary file")
        text = data[: self.read_limit].decode("utf-8", errors="replace")
        if len(data) > self.read_limit:
            text += f"\n[… truncated at {self.read_limit} bytes]"
        return text

    def read_bytes(self, real: Path, limit: int) -> bytes:
        size = real.stat().st_size
        if size > limit:
            raise ToolError(f"'{self.relative(real)}' is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit")
        return real.read_bytes()

    def walk(self, pattern: str):
        """Allowed files whose workspace-relative path matches the glob (`**/` may match nothing)."""
        pattern = pattern or "**/*"
        pats = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and self.allowed(here / d))
                for name in sorted(filenames):
                    real = here / name
                    rel = real.relative_to(root).as_posix()
                    if any(fnmatch.fnmatch(rel, p) or ("/" not in p and fnmatch.fnmatch(name, p)) for p in pats) \
                            and self.allowed(real):
                        yield real


@dataclass
class ToolBox:
    """The tools offered to the model for one request, with the editor state they read."""

    sandbox: Sandbox
    diagnostics: dict[str, list[str]] = field(default_factory=dict)  # real path -> "line N: message"
    base: Optional[Path] = None  # the document's folder: relative paths resolve from the workspace root
    web_search: bool = False

    def specs(self) -> list[dict]:
        def fn(name: str, desc: str, props: dict, required: list[str]) -> dict:
            return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
                "type": "object", "properties": props, "required": required}}}

        path = {"type": "string", "description": "Path relative to the workspace root"}
        glob = {"type": "string", "description": "Glob relative to the workspace root, e.g. **/*.py"}
        specs = [
            fn("read_file", "Read lines of a workspace file (1-based, inclusive).",
               {"path": path, "startLine": {"type": "integer"}, "endLine": {"type": "integer"}}, ["path"]),
            fn("list_files", "List workspace files matching a glob.", {"glob": glob}, []),
            fn("search_text", "Search workspace files for a regular expression.",
               {"pattern": {"type": "string"}, "glob": glob}, ["pattern"]),
            fn("get_diagnostics", "Problems the editor reported for a file.", {"path": path}, ["path"]),
            fn("get_document_symbols", "An outline (classes, functions) of a file.", {"path": path}, ["path"]),
        ]
        if self.web_search:
            specs.append({"type": "builtin_function", "function": {"name": "$web_search"}})
        return specs

    @staticmethod
    def args(call: ToolCall) -> dict:
        try:
            value = json.loads(call.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def describe(self, call: ToolCall) -> str:
        a = self.args(call)
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
        return f"calling {call.name}"

    async def run(self, call: ToolCall) -> str:
        if call.name == "$web_search":
            return call.arguments  # Moonshot's protocol: hand the arguments back; the search runs on their side
        handler: Optional[Callable[[dict], str]] = {
            "read_file": self._read_file, "list_files": self._list_files, "search_text": self._search_text,
            "get_diagnostics": self._diagnostics, "get_document_symbols": self._symbols}.get(call.name)
        if handler is None:
            return f"error: unknown tool '{call.name}'"
        try:
            return await asyncio.to_thread(handler, self.args(call))
        except ToolError as exc:
            return str(exc)
        except (OSError, ValueError, TypeError) as exc:
            return f"error: {type(exc).__name__}: {exc}"

    # -- the tools (worker thread) -------------------------------------------------------------------------------
    def _read_file(self, a: dict) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        lines = self.sandbox.read_text(real).splitlines()
        start = max(1, int(a.get("startLine") or 1))
        end = min(len(lines), int(a.get("endLine") or start + 399))
        body = "\n".join(f"{n}: {lines[n - 1]}" for n in range(start, end + 1))
        return f"{self.sandbox.relative(real)} (lines {start}-{end} of {len(lines)})\n{body}"

    def _list_files(self, a: dict) -> str:
        out = []
        for real in self.sandbox.walk(str(a.get("glob") or "**/*")):
            out.append(self.sandbox.relative(real))
            if len(out) >= LIST_LIMIT:
                out.append(f"[… more than {LIST_LIMIT} files]")
                break
        return "\n".join(out) or "no matching files"

    def _search_text(self, a: dict) -> str:
        pattern = str(a.get("pattern") or "")
        if not pattern:
            raise ToolError("error: a pattern is required")
        try:
            rx = re.compile(pattern)
        except re.error:
            rx = re.compile(re.escape(pattern))
        hits = []
        for real in self.sandbox.walk(str(a.get("glob") or "**/*")):
            try:
                text = self.sandbox.read_text(real)
            except ToolError:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if rx.search(line):
                    hits.append(f"{self.sandbox.relative(real)}:{n}: {line.strip()[:200]}")
                    if len(hits) >= SEARCH_LIMIT:
                        return "\n".join(hits + [f"[… stopped at {SEARCH_LIMIT} matches]"])
        return "\n".join(hits) or "no matches"

    def _diagnostics(self, a: dict) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        found = self.diagnostics.get(str(real), [])
        return "\n".join(found) if found else f"no problems reported for {self.sandbox.relative(real)}"

    _SYMBOL = re.compile(r"^\s*(?:export\s+)?(?:pub(?:\(\w+\))?\s+)?(?:async\s+)?(?:local\s+)?"
                         r"(def|class|function|func|fn|interface|struct|enum|trait|impl|type|module)\b.*")

    def _symbols(self, a: dict) -> str:
        real = self.sandbox.resolve(a.get("path", ""))
        out = [f"{n}: {line.strip()[:160]}" for n, line in enumerate(self.sandbox.read_text(real).splitlines(), 1)
               if self._SYMBOL.match(line)]
        return "\n".join(out) or "no symbols found"
