"""Errors the user can act on, as diagnostics on the range the action ran on, and their quick fixes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from lsprotocol import types as lsp

from kimi_lsp import errors
from kimi_lsp.lsp.convert import fs_path
from kimi_lsp.lsp.feature import Feature

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

SOURCE = "kimi"
ACTIONABLE = (errors.Unauthorized, errors.NoApiKey, errors.ModelNotFound)
CODES = frozenset(e.code for e in ACTIONABLE)


class Diagnostics(Feature):
    """Our published diagnostics (by uri), and the problems the editor reported for a file (for the model's
    get_diagnostics tool)."""

    def __init__(self, ls: KimiLanguageServer) -> None:
        super().__init__(ls)
        self.published: dict[str, list[lsp.Diagnostic]] = {}
        self._reported: dict[str, dict[tuple[int, str], None]] = {}  # fs path -> (line, problem), in order

    @property
    def seen(self) -> dict[str, list[str]]:
        """Problems the editor reported, by file, as the get_diagnostics tool gives them (by line)."""
        return {path: [text for _, text in sorted(found)] for path, found in self._reported.items() if found}

    def remember(self, path: str, first: int, last: int, found: list[tuple[int, str]]) -> None:
        """A code-action request brings the problems on lines first..last: they replace what was known there."""
        lines = {line for line, _ in found}  # the range's own lines are compared, never listed (it may be huge)
        kept = {k: None for k in self._reported.get(path, {}) if not (first <= k[0] <= last or k[0] in lines)}
        kept.update(dict.fromkeys(found))
        self._reported[path] = kept

    def did_close(self, uri: str) -> None:
        if (path := fs_path(uri)) is not None:
            self._reported.pop(path, None)
        clear(self.ls, uri)

    def configuration_changed(self) -> None:
        clear(self.ls)


def diagnostic_for(
    exc: errors.KimiError, rng: lsp.Range, *, region: str, models: list[str], region_decides: bool = True
) -> lsp.Diagnostic:
    """`region_decides`: the region picks the URL (no kimi.baseUrl), so switching it can help."""
    data: dict = {"region": region, "regionDecides": region_decides}
    if isinstance(exc, errors.ModelNotFound):
        data["model"] = exc.model
        data["models"] = models
        if exc.successor:
            data["successor"] = exc.successor
        listed = ", ".join(models[:12]) + (" …" if len(models) > 12 else "")
        message = f"{exc.message} Models this account can use: {listed or '(the list could not be fetched)'}."
    else:
        message = exc.message
    return lsp.Diagnostic(
        range=rng, message=message, severity=lsp.DiagnosticSeverity.Error, source=SOURCE, code=exc.code, data=data
    )


def publish(ls: KimiLanguageServer, uri: str, diag: lsp.Diagnostic) -> None:
    # One diagnostic per code and document: a repeated failure replaces the old one.
    published = Diagnostics.of(ls).published
    published[uri] = [d for d in published.get(uri, []) if d.code != diag.code] + [diag]
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=published[uri]))


def ours(ls: KimiLanguageServer, uri: str, diag: lsp.Diagnostic) -> Optional[lsp.Diagnostic]:
    """Our own diagnostic as we published it, when the editor sends it back. Some clients (ALE) drop `source`
    and `data`: it is recognised by its code, or by the message and range we published."""
    for mine in Diagnostics.of(ls).published.get(uri, []):
        if diag.message == mine.message and (diag.code in (None, mine.code) or str(diag.code) == mine.code):
            return mine
        if diag.code == mine.code and diag.range == mine.range:
            return mine
    if diag.source == SOURCE and diag.code in CODES:
        return diag  # published by an earlier server process: its data still says what to offer
    return None


def clear(ls: KimiLanguageServer, uri: Optional[str] = None) -> None:
    published = Diagnostics.of(ls).published
    for u in [uri] if uri else list(published):
        if published.pop(u, None):
            ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=u, diagnostics=[]))


def clear_all(ls: KimiLanguageServer) -> None:
    clear(ls, None)


def quick_fixes(diag: lsp.Diagnostic, client_prompts: bool = True) -> list[lsp.CodeAction]:
    """Fixes for one of our diagnostics, built from its `data` alone (no network). `client_prompts`: the editor
    runs `kimi.enterApiKey` itself (our plugins); other editors get `kimi.keyHelp`, which explains the ways."""
    data = diag.data if isinstance(diag.data, dict) else {}
    region = data.get("region", "international")
    other = "china" if region == "international" else "international"

    def action(title: str, command: str, args: dict, preferred: bool = False) -> lsp.CodeAction:
        return lsp.CodeAction(
            title=title,
            kind=lsp.CodeActionKind.QuickFix,
            diagnostics=[diag],
            is_preferred=preferred or None,
            command=lsp.Command(title=title, command=command, arguments=[args]),
        )

    if diag.code in (errors.Unauthorized.code, errors.NoApiKey.code):
        fixes = [
            action("Kimi: Set API key…", "kimi.enterApiKey", {"region": region}, preferred=True)
            if client_prompts
            else action("Kimi: How to set the API key", "kimi.keyHelp", {"region": region}, preferred=True)
        ]
        if diag.code == errors.Unauthorized.code and data.get("regionDecides", True):
            fixes.append(action(f"Kimi: Switch region to {other}", "kimi.setRegion", {"region": other}))
        return fixes
    if diag.code == errors.ModelNotFound.code:
        successor = data.get("successor")
        return [
            action(
                f"Kimi: Use {m} (the successor of {data.get('model')})" if m == successor else f"Kimi: Use model {m}",
                "kimi.selectModel",
                {"model": m},
                preferred=i == 0,
            )
            for i, m in enumerate(data.get("models", [])[:8])
        ]
    return []
