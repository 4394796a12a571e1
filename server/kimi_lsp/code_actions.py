"""`textDocument/codeAction`: instant, no network. Each action carries the command that does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from lsprotocol import types as lsp

from .actions import BUILTIN_ACTIONS, ActionSpec, custom_action
from .diagnostics import SOURCE, quick_fixes

if TYPE_CHECKING:
    from .server import KimiLanguageServer

KINDS = [lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.RefactorRewrite, lsp.CodeActionKind.Refactor]


def _allowed(kind: str, only: Optional[list[str]]) -> bool:
    """LSP's rule: a kind matches `only` entries that equal it or are a dot-prefix of it."""
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def _diag_json(d: lsp.Diagnostic) -> dict:
    return {"message": d.message, "line": d.range.start.line, "source": d.source or "",
            "code": d.code if d.code is None or isinstance(d.code, (str, int)) else str(d.code)}


def actions_for(uri: str, rng: lsp.Range, context: lsp.CodeActionContext, specs: list[ActionSpec]) -> list[lsp.CodeAction]:
    only = [str(k.value if hasattr(k, "value") else k) for k in context.only] if context.only else None
    ours = [d for d in context.diagnostics if d.source == SOURCE]
    theirs = [d for d in context.diagnostics if d.source != SOURCE]
    out: list[lsp.CodeAction] = []
    for d in ours:
        out.extend(a for a in quick_fixes(d) if _allowed(a.kind, only))

    empty = rng.start == rng.end
    if empty and theirs:
        # No selection but a problem under the cursor: offer Fix over the lines the diagnostics cover.
        rng = lsp.Range(start=lsp.Position(line=min(d.range.start.line for d in theirs), character=0),
                        end=lsp.Position(line=max(d.range.end.line for d in theirs) + 1, character=0))
        specs = [s for s in specs if s.id == "fix"]
    elif empty:
        return out

    for spec in specs:
        kind = spec.kind
        if spec.id == "fix":
            kind = lsp.CodeActionKind.QuickFix.value if theirs else lsp.CodeActionKind.RefactorRewrite.value
        if not _allowed(kind, only):
            continue
        args: dict = {"uri": uri, "range": {"start": {"line": rng.start.line, "character": rng.start.character},
                                            "end": {"line": rng.end.line, "character": rng.end.character}}}
        if spec.command == "kimi.runAction":
            args["id"] = spec.id
        if spec.id == "fix" and theirs:
            args["diagnostics"] = [_diag_json(d) for d in theirs]
        out.append(lsp.CodeAction(
            title=spec.title, kind=kind, diagnostics=theirs if spec.id == "fix" and theirs else None,
            command=lsp.Command(title=spec.title, command=spec.command, arguments=[args])))
    return out


def setup(ls: "KimiLanguageServer") -> None:
    @ls.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=KINDS, resolve_provider=False))
    async def code_action(ls: "KimiLanguageServer", params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        settings = await ls.config.settled(params.text_document.uri)
        specs = [BUILTIN_ACTIONS[k] for k in ("explain", "refactor", "fix", "document")]
        specs += [custom_action(a) for a in settings.actions]
        return actions_for(params.text_document.uri, params.range, params.context, specs)
