"""Actions and the one pipeline every request goes through, from editor or terminal:

    Job (action + selection + settings) -> prompt -> size check -> Kimi stream -> Sink -> Outcome

The pipeline knows nothing about LSP; the server and the CLI each provide a Sink and apply the Outcome.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

from lsprotocol.types import CodeActionKind

from . import errors
from .client import KimiClient, chat_body, thinks
from .edits import fit_to_selection, strip_fences
from .models import BUILTIN_MODELS, ModelInfo, larger_windows
from .prompts import PromptInput, build_messages, estimate_tokens
from .settings import CustomAction, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionSpec:
    id: str                 # the task name in prompts; custom ids as the user wrote them
    title: str
    output: str             # replace | insertBefore | insertAfter | show
    kind: str               # LSP code action kind
    command: str            # the workspace/executeCommand id
    template: Optional[str] = None

    @property
    def edits(self) -> bool:
        return self.output != "show"


BUILTIN_ACTIONS: dict[str, ActionSpec] = {
    "explain": ActionSpec("explain", "Kimi: Explain", "show", "kimi.explain", "kimi.explain"),
    "refactor": ActionSpec("refactor", "Kimi: Refactor", "replace", CodeActionKind.RefactorRewrite.value,
                           "kimi.refactor"),
    "fix": ActionSpec("fix", "Kimi: Fix", "replace", CodeActionKind.QuickFix.value, "kimi.fix"),
    "document": ActionSpec("document", "Kimi: Add docs", "replace", CodeActionKind.RefactorRewrite.value,
                           "kimi.document"),
    "ask": ActionSpec("ask", "Kimi: Ask", "show", "kimi.ask", "kimi.ask"),
}
EXPLAIN_KIND = "kimi.explain"


def custom_action(a: CustomAction) -> ActionSpec:
    kind = "kimi.custom" if a.output == "show" else CodeActionKind.RefactorRewrite.value
    return ActionSpec(a.id, a.title if a.title.startswith("Kimi") else f"Kimi: {a.title}", a.output, kind,
                      "kimi.runAction", template=a.prompt)


@dataclass
class Job:
    action: ActionSpec
    text: str                      # the whole document
    start: int                     # selection offsets into text
    end: int
    settings: Settings
    model: ModelInfo
    request_id: str
    language: str = ""
    path: str = ""
    instruction: str = ""
    diagnostics: list[str] = field(default_factory=list)

    @property
    def selection(self) -> str:
        return self.text[self.start:self.end]


@dataclass
class Outcome:
    request_id: str
    model: str
    text: str = ""                 # the answer, reasoning removed
    reasoning: str = ""
    usage: Optional[dict] = None
    finish_reason: Optional[str] = None
    elapsed_ms: int = 0
    new_code: Optional[str] = None  # for edit actions: what replaces / is inserted at the selection
    error: Optional[errors.KimiError] = None
    cancelled: bool = False


class Sink(Protocol):
    def status(self, text: str) -> None: ...
    def delta(self, kind: str, text: str) -> None: ...


def context_around(text: str, start: int, end: int, lines: int) -> tuple[str, str]:
    """Up to `lines` whole lines above and below the selection (plus the rest of lines it starts or ends in)."""
    if lines <= 0:
        return "", ""
    cut = text.rfind("\n", 0, start) + 1  # start of the line the selection starts in
    for _ in range(lines):
        if cut == 0:
            break
        cut = text.rfind("\n", 0, cut - 1) + 1
    stop = end if end == 0 or text[end - 1] == "\n" else _line_end(text, end)
    for _ in range(lines):
        stop = _line_end(text, stop)
    return text[cut:start], text[end:stop]


def _line_end(text: str, i: int) -> int:
    nl = text.find("\n", i)
    return len(text) if nl < 0 else nl + 1


def build_prompt(job: Job, context_lines: int) -> list[dict]:
    before, after = context_around(job.text, job.start, job.end, context_lines)
    return build_messages(PromptInput(
        task=job.action.id, selection=job.selection, language=job.language, file=job.path, before=before,
        after=after, instruction=job.instruction, diagnostics=job.diagnostics, template=job.action.template,
        code_output=job.action.edits))


async def fit_prompt(job: Job, client: Optional[KimiClient], candidates: Iterable[ModelInfo]) -> list[dict]:
    """The largest prompt that fits the model's window: context is trimmed first, the selection never.

    A local estimate decides clear cases with no network call; close calls ask the API's estimator.
    """
    reserve = job.settings.max_tokens or job.model.default_max_tokens
    budget = job.model.context_length - reserve
    lines = job.settings.context_lines
    while True:
        messages = build_prompt(job, lines)
        local = estimate_tokens(messages)
        if local <= budget * 0.8:
            return messages
        if local <= budget * 1.25 and client is not None:
            try:
                exact = await client.estimate_tokens(job.model.id, messages)
            except errors.KimiError:
                exact = local
            if exact <= budget:
                return messages
        if lines == 0:
            break
        lines //= 2
    needed = local + reserve
    fits = larger_windows(job.model.id, needed, candidates)
    hint = f" Models that would fit: {', '.join(fits[:5])}." if fits else " No known model has a window that large."
    raise errors.Refused(
        f"The selection is too large for {job.model.id}: about {local:,} tokens of prompt plus {reserve:,} reserved "
        f"for the reply, but the window is {job.model.context_length:,} tokens. Select less code.{hint}")


async def run_job(job: Job, client: KimiClient, sink: Sink, candidates: Iterable[ModelInfo] = ()) -> Outcome:
    """Runs one action to completion. Raises KimiError; cancellation propagates (nothing to undo)."""
    began = time.monotonic()
    candidates = list(candidates) or list(BUILTIN_MODELS.values())
    messages = await fit_prompt(job, client, candidates)
    body = chat_body(job.model, job.settings, messages)
    sink.status("thinking" if thinks(job.model, job.settings) else "waiting for the first token")
    reply = await client.stream_chat(body, sink.delta)
    out = Outcome(request_id=job.request_id, model=reply.model or job.model.id, text=reply.content.strip("\n"),
                  reasoning=reply.reasoning, usage=reply.usage, finish_reason=reply.finish_reason,
                  elapsed_ms=int((time.monotonic() - began) * 1000))
    if reply.finish_reason == "length":
        if not reply.content.strip() and reply.reasoning:
            raise errors.KimiError(
                f"{job.model.id} spent the whole token budget on thinking and wrote no answer. Raise kimi.maxTokens "
                "(Moonshot advises at least 16000 for thinking models) or turn kimi.thinking off.")
        if job.action.edits:
            raise errors.KimiError("The answer was cut off by the token limit (finish_reason: length), so it was not "
                                   "applied. Raise kimi.maxTokens or select less code.")
    if job.action.edits:
        code = strip_fences(reply.content)
        if not code.strip():
            raise errors.KimiError("Kimi returned no code, so nothing was changed.")
        out.new_code = fit_to_selection(job.selection, code) if job.action.output == "replace" else code
    elif not out.text.strip():
        raise errors.KimiError("Kimi returned an empty answer.")
    return out
