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
    """One action, as data: what the editor and the terminal need to run it and place its result."""

    id: str  # the task name in prompts; custom ids as the user wrote them
    title: str
    output: str  # its output kind (core.outputs): show | replace | insertBefore | insertAfter | comment | altText
    kind: str  # LSP code action kind
    command: str  # the workspace/executeCommand id
    template: Optional[str] = None
    key: str = ""  # the action's own name (BUILTIN_ACTIONS key, or a custom id): results and streams carry it
    image: bool = False  # its input is the image the selection (or the cursor's line) references
    attach: bool = False  # a shown answer stays attached to its range (hover, code lens)
    needs_document: bool = True  # `ask` runs without a document

    @property
    def edits(self) -> bool:
        return self.output != "show"

    @property
    def needs_selection(self) -> bool:
        """An empty selection is refused (it would replace nothing); image actions take the cursor's line."""
        return self.output == "replace"


def _builtin(
    key: str,
    task: str,
    title: str,
    output: str,
    kind: str,
    command: str,
    *,
    image: bool = False,
    attach: bool = False,
    needs_document: bool = True,
) -> ActionSpec:
    return ActionSpec(
        task, title, output, kind, command, key=key, image=image, attach=attach, needs_document=needs_document
    )


BUILTIN_ACTIONS: dict[str, ActionSpec] = {
    a.key: a
    for a in (
        _builtin("explain", "explain", "Kimi: Explain", "show", "kimi.explain", "kimi.explain", attach=True),
        _builtin("refactor", "refactor", "Kimi: Refactor", "replace", REFACTOR_REWRITE, "kimi.refactor"),
        _builtin("fix", "fix", "Kimi: Fix", "replace", QUICK_FIX, "kimi.fix"),
        _builtin("document", "document", "Kimi: Add docs", "replace", REFACTOR_REWRITE, "kimi.document"),
        _builtin("ask", "ask", "Kimi: Ask", "show", "kimi.ask", "kimi.ask", attach=True, needs_document=False),
        _builtin(
            "explain-comment",
            "explain",
            "Kimi: Explain as comment",
            "comment",
            REFACTOR_REWRITE,
            "kimi.explainAsComment",
        ),
        _builtin(
            "describe-image",
            "describe-image",
            "Kimi: Describe image",
            "show",
            "kimi.image",
            "kimi.describeImage",
            image=True,
        ),
        _builtin(
            "alt-text",
            "alt-text",
            "Kimi: Write alt text",
            "altText",
            REFACTOR_REWRITE,
            "kimi.writeAltText",
            image=True,
        ),
        _builtin(
            "mockup",
            "mockup",
            "Kimi: Implement this mockup",
            "insertAfter",
            REFACTOR,
            "kimi.implementMockup",
            image=True,
        ),
    )
}
IMAGE_ACTIONS = tuple(k for k, a in BUILTIN_ACTIONS.items() if a.image)  # offered where an image is referenced


def custom_action(a: CustomAction) -> ActionSpec:
    kind = "kimi.custom" if a.output == "show" else REFACTOR_REWRITE
    return ActionSpec(
        a.id,
        a.title if a.title.startswith("Kimi") else f"Kimi: {a.title}",
        a.output,
        kind,
        "kimi.runAction",
        template=a.prompt,
        key=a.id,
    )


# Not a code action of the table above: kimi.nextEdit takes a position, and its window is chosen around it.
NEXT_EDIT = _builtin("next-edit", "next-edit", "Kimi: Suggest next edit", "replace", REFACTOR_REWRITE, "kimi.nextEdit")
APPLY_FROM_THREAD = _builtin(
    "apply-from-thread", "apply", "Kimi: Apply from conversation", "replace", REFACTOR_REWRITE, "kimi.applyFromThread"
)
