"""What an action is, as data: its prompt task, its output kind and how the editor offers it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from kimi_lsp.settings import CustomAction

# LSP's code action kinds, as the protocol spells them (core speaks no lsprotocol).
QUICK_FIX = "quickfix"
REFACTOR = "refactor"
REFACTOR_REWRITE = "refactor.rewrite"


@dataclass(frozen=True)
class ActionSpec:
    id: str  # the task name in prompts; custom ids as the user wrote them
    title: str
    output: str  # show | replace | insertBefore | insertAfter | comment | altText
    kind: str  # LSP code action kind
    command: str  # the workspace/executeCommand id
    template: Optional[str] = None

    @property
    def edits(self) -> bool:
        return self.output != "show"


BUILTIN_ACTIONS: dict[str, ActionSpec] = {
    "explain": ActionSpec("explain", "Kimi: Explain", "show", "kimi.explain", "kimi.explain"),
    "refactor": ActionSpec("refactor", "Kimi: Refactor", "replace", REFACTOR_REWRITE, "kimi.refactor"),
    "fix": ActionSpec("fix", "Kimi: Fix", "replace", QUICK_FIX, "kimi.fix"),
    "document": ActionSpec("document", "Kimi: Add docs", "replace", REFACTOR_REWRITE, "kimi.document"),
    "ask": ActionSpec("ask", "Kimi: Ask", "show", "kimi.ask", "kimi.ask"),
    "explain-comment": ActionSpec(
        "explain", "Kimi: Explain as comment", "comment", REFACTOR_REWRITE, "kimi.explainAsComment"
    ),
    "describe-image": ActionSpec("describe-image", "Kimi: Describe image", "show", "kimi.image", "kimi.describeImage"),
    "alt-text": ActionSpec("alt-text", "Kimi: Write alt text", "altText", REFACTOR_REWRITE, "kimi.writeAltText"),
    "mockup": ActionSpec("mockup", "Kimi: Implement this mockup", "insertAfter", REFACTOR, "kimi.implementMockup"),
}
IMAGE_ACTIONS = ("describe-image", "alt-text", "mockup")
EXPLAIN_KIND = "kimi.explain"


def custom_action(a: CustomAction) -> ActionSpec:
    kind = "kimi.custom" if a.output == "show" else REFACTOR_REWRITE
    return ActionSpec(
        a.id,
        a.title if a.title.startswith("Kimi") else f"Kimi: {a.title}",
        a.output,
        kind,
        "kimi.runAction",
        template=a.prompt,
    )
