"""`textDocument/codeAction`: instant, no network. Each action carries the command that does the work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from lsprotocol import types as lsp

from kimi_lsp.core.actions import BUILTIN_ACTIONS, IMAGE_ACTIONS, REFACTOR_REWRITE, ActionSpec, custom_action
from kimi_lsp.lsp.convert import fs_path
from kimi_lsp.lsp.feature import Feature
from kimi_lsp.lsp.features.diagnostics import Diagnostics, quick_fixes
from kimi_lsp.lsp.features.diagnostics import ours as our_diagnostic

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

KINDS = [lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.RefactorRewrite, lsp.CodeActionKind.Refactor]


def _allowed(kind: Optional[str], only: Optional[list[str]]) -> bool:
    """LSP's rule: a kind matches `only` entries that equal it or are a dot-prefix of it."""
    return not only or (kind is not None and any(kind == o or kind.startswith(o + ".") for o in only))


def _diag_json(d: lsp.Diagnostic) -> dict:
    return {
        "message": d.message,
        "line": d.range.start.line,
        "source": d.source or "",
        "code": d.code if d.code is None or isinstance(d.code, (str, int)) else str(d.code),
    }


def _command_args(uri: str, rng: lsp.Range, **extra) -> dict:
    return {
        "uri": uri,
        "range": {
            "start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character},
        },
        **extra,
    }


def image_actions(uri: str, rng: lsp.Range, text: str, only: Optional[list[str]]) -> list[lsp.CodeAction]:
    """Describe / alt text / mockup, when `text` (the selection or the cursor's line) references an image."""
    from kimi_lsp.core.images import find_image_refs  # first code action, not start-up (B1)

    refs = find_image_refs(text)
    if not refs:
        return []
    out = []
    for name in IMAGE_ACTIONS:
        spec = BUILTIN_ACTIONS[name]
        if name == "alt-text" and not any(r.kind in ("markdown", "html") for r in refs):
            continue
        if _allowed(spec.kind, only):
            out.append(
                lsp.CodeAction(
                    title=spec.title,
                    kind=spec.kind,
                    command=lsp.Command(title=spec.title, command=spec.command, arguments=[_command_args(uri, rng)]),
                )
            )
    return out


def split_diagnostics(
    ls: KimiLanguageServer, uri: str, diagnostics: Sequence[lsp.Diagnostic]
) -> tuple[list[lsp.Diagnostic], list[lsp.Diagnostic]]:
    """(ours as we published them, the editor's other problems)."""
    ours, theirs = [], []
    for d in diagnostics:
        mine = our_diagnostic(ls, uri, d)
        if mine is None:
            theirs.append(d)
        elif mine not in ours:
            ours.append(mine)
    return ours, theirs


def actions_for(
    uri: str,
    rng: lsp.Range,
    context: lsp.CodeActionContext,
    specs: list[ActionSpec],
    client_prompts: bool = True,
    ours: Optional[list[lsp.Diagnostic]] = None,
    theirs: Optional[list[lsp.Diagnostic]] = None,
) -> list[lsp.CodeAction]:
    only = [str(k.value if hasattr(k, "value") else k) for k in context.only] if context.only else None
    if ours is None or theirs is None:
        ours = [d for d in context.diagnostics if d.source == "kimi"]
        theirs = [d for d in context.diagnostics if d.source != "kimi"]
    out: list[lsp.CodeAction] = []
    for d in ours:
        out.extend(a for a in quick_fixes(d, client_prompts) if _allowed(a.kind, only))

    empty = rng.start == rng.end
    if empty and theirs:
        # No selection but a problem under the cursor: offer Fix over the lines the diagnostics cover.
        rng = lsp.Range(
            start=lsp.Position(line=min(d.range.start.line for d in theirs), character=0),
            end=lsp.Position(line=max(d.range.end.line for d in theirs) + 1, character=0),
        )
        specs = [s for s in specs if s.id == "fix"]
    elif empty:
        return out

    for spec in specs:
        kind = spec.kind
        if spec.id == "fix":
            kind = lsp.CodeActionKind.QuickFix.value if theirs else lsp.CodeActionKind.RefactorRewrite.value
        if not _allowed(kind, only):
            continue
        args = _command_args(uri, rng)
        if spec.command == "kimi.runAction":
            args["id"] = spec.id
        if spec.id == "fix" and theirs:
            args["diagnostics"] = [_diag_json(d) for d in theirs]
        out.append(
            lsp.CodeAction(
                title=spec.title,
                kind=kind,
                diagnostics=theirs if spec.id == "fix" and theirs else None,
                command=lsp.Command(title=spec.title, command=spec.command, arguments=[args]),
            )
        )
    return out


class CodeActions(Feature):
    """`textDocument/codeAction`."""

    def register(self) -> None:
        ls = self.ls

        @ls.feature(
            lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=KINDS, resolve_provider=False)
        )
        async def code_action(ls: KimiLanguageServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
            settings = await ls.config.settled(params.text_document.uri)
            specs = [BUILTIN_ACTIONS[k] for k in ("explain", "refactor", "fix", "document", "explain-comment")]
            specs += [custom_action(a) for a in settings.actions]
            uri, rng = params.text_document.uri, params.range
            ours, theirs = split_diagnostics(ls, uri, params.context.diagnostics)
            remember_diagnostics(ls, uri, rng, theirs)
            out = actions_for(uri, rng, params.context, specs, client_prompts=ls.stream_ui, ours=ours, theirs=theirs)
            doc = ls.document(uri)
            only = [str(getattr(k, "value", k)) for k in params.context.only] if params.context.only else None
            if (
                rng.start == rng.end
                and doc is not None
                and (not only or any(REFACTOR_REWRITE.startswith(k) for k in only))
            ):
                pos = {"line": rng.start.line, "character": rng.start.character}
                out.append(
                    lsp.CodeAction(
                        title="Kimi: Suggest next edit",
                        kind=REFACTOR_REWRITE,
                        command=lsp.Command(
                            title="Kimi: Suggest next edit",
                            command="kimi.nextEdit",
                            arguments=[{"uri": uri, "position": pos}],
                        ),
                    )
                )
            if doc is not None and rng.start.line < len(doc.lines):
                if rng.start == rng.end:
                    line = rng.start.line
                    rng = lsp.Range(
                        start=lsp.Position(line=line, character=0), end=lsp.Position(line=line + 1, character=0)
                    )
                    text = doc.lines[line]
                else:
                    text = doc.source[doc.offset_at_position(rng.start) : doc.offset_at_position(rng.end)]
                out += image_actions(uri, rng, text, only)
            return out


def remember_diagnostics(ls: KimiLanguageServer, uri: str, rng: lsp.Range, theirs: list[lsp.Diagnostic]) -> None:
    """Diagnostics arrive with code-action requests (those overlapping its range); keep them, per file, for the
    model's get_diagnostics tool."""
    path = fs_path(uri)
    if path:
        found = [
            (d.range.start.line, f"line {d.range.start.line + 1}: {d.message}" + (f" ({d.source})" if d.source else ""))
            for d in theirs
        ]
        Diagnostics.of(ls).remember(path, rng.start.line, rng.end.line, found)
