"""Actions and the one pipeline every request goes through, from editor or terminal:

    Job (action + selection + settings) -> prompt -> size check -> Kimi stream -> Sink -> Outcome

The pipeline knows nothing about LSP; the server and the CLI each provide a Sink and apply the Outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Protocol

from kimi_lsp import errors
from kimi_lsp.core.actions import ActionSpec
from kimi_lsp.core.edits import MAX_EDIT_REPLY, clean_code, fit_to_selection, strip_fences
from kimi_lsp.core.lines import line_end, line_start, previous_line_start
from kimi_lsp.core.prompts import PromptInput, build_messages, estimate_tokens, fits_whole, selection_lines
from kimi_lsp.kimi.models import BUILTIN_MODELS, ModelInfo, current, larger_windows, retirement

if TYPE_CHECKING:  # the HTTP and settings stacks load on first use, not at start-up
    from kimi_lsp.core.images import Image
    from kimi_lsp.core.tools import ToolBox
    from kimi_lsp.kimi.sse import Reply
    from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)
GRACE = 0.5  # seconds past the job's deadline before tool work is cut off from outside


@dataclass
class Job:
    action: ActionSpec
    text: str  # the whole document
    start: int  # selection offsets into text
    end: int
    settings: Settings
    model: ModelInfo
    request_id: str
    language: str = ""
    path: str = ""
    instruction: str = ""
    diagnostics: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    width: int = 100  # the editor's text width, for comments
    generation: Optional[int] = None  # which opening of the document (documents.FastTextDocument.generation)
    prompt_selection: Optional[str] = None  # the selection as the model sees it (a `# kimi:` line taken out)
    notices: list[tuple[str, str]] = field(default_factory=list)  # (key, text) to show once; the job still runs
    follow_up: list[dict[str, Any]] = field(default_factory=list)  # later turns after the prompt (a refinement)
    base_text: Optional[str] = None  # the file as earlier prompts sent it (core.context), shown with `changes`
    history: Optional[list[dict[str, Any]]] = None  # a conversation's messages so far: sent instead of a new prompt
    thread_id: Optional[str] = None  # the conversation this request continues (core.threads)
    question: str = ""  # as the user asked it (without the references resolved into the prompt)
    references: list[str] = field(default_factory=list)  # what the question's #references resolved to (labels)
    note: str = ""  # said with the answer (e.g. earlier turns left out to fit the window)
    changes: str = ""  # a unified diff from base_text to text
    refines: Optional[str] = None  # the proposal a refinement replaces the hunks of

    @property
    def selection(self) -> str:
        return self.text[self.start : self.end]


@dataclass
class Outcome:
    request_id: str
    model: str
    text: str = ""  # the answer, reasoning removed
    reasoning: str = ""
    usage: Optional[dict[str, int]] = None  # normalised (kimi.pricing): prompt, completion, total, cached tokens
    cost: Optional[dict[str, Any]] = None  # {amount, currency}; None when the model's price is not known
    web_searches: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # the messages of the first round, as sent
    finish_reason: Optional[str] = None
    elapsed_ms: int = 0
    new_code: Optional[str] = None  # for edit actions: what replaces / is inserted at the selection
    error: Optional[errors.KimiError] = None
    cancelled: bool = False


class Chat(Protocol):
    """What the pipeline needs of the Kimi API (kimi.http.KimiClient): core never sees HTTP."""

    async def estimate_tokens(self, model: str, messages: list[dict[str, Any]]) -> int: ...
    async def stream_chat(
        self,
        body: dict[str, Any],
        emit: Callable[[str, str], None],
        on_sent: Optional[Callable[[], None]] = None,
        timeout: Optional[float] = None,
        status: Optional[Callable[[str], None]] = None,
    ) -> Reply: ...


class Sink(Protocol):
    def sent(self) -> None: ...  # the chat request is on the wire
    def status(self, text: str) -> None: ...
    def delta(self, kind: str, text: str) -> None: ...


def context_around(text: str, start: int, end: int, lines: int) -> tuple[str, str]:
    """Up to `lines` whole lines (LSP's) above and below the selection (plus the rest of lines it starts or ends
    in)."""
    if lines <= 0:
        return "", ""
    cut = line_start(text, start)
    for _ in range(lines):
        if cut == 0:
            break
        cut = previous_line_start(text, cut)
    stop = end if line_start(text, end) == end else line_end(text, end)
    for _ in range(lines):
        stop = line_end(text, stop)
    return text[cut:start], text[end:stop]


def build_prompt(job: Job, context_lines: int, whole_file: Optional[bool] = None) -> list[dict[str, Any]]:
    """The messages for `job`: the whole document first when `whole_file` (None: when it is at most
    kimi.fileContextTokens), else `context_lines` lines around the selection."""
    if whole_file is None:
        whole_file = fits_whole(job.text, job.settings.file_context_tokens)
    if job.start == 0 and job.end >= len(job.text):
        whole_file = False  # the selection is the whole file: it is sent once, as the selection
    before, after = ("", "") if whole_file else context_around(job.text, job.start, job.end, context_lines)
    return build_messages(
        PromptInput(
            task=job.action.id,
            selection=job.selection if job.prompt_selection is None else job.prompt_selection,
            language=job.language,
            file=job.path,
            before=before,
            after=after,
            instruction=job.instruction,
            diagnostics=job.diagnostics,
            template=job.action.template,
            code_output=job.action.edits and job.action.output not in ("altText", "comment"),
            images=job.images,
            document=(job.base_text if job.base_text is not None else job.text) if whole_file else None,
            lines=selection_lines(job.text, job.start, job.end) if whole_file else None,
            changes=job.changes if whole_file and job.base_text is not None else "",
        )
    )


async def fit_prompt(job: Job, client: Optional[Chat], candidates: Iterable[ModelInfo]) -> list[dict[str, Any]]:
    """The largest prompt that fits the model's window: context is trimmed first, the selection never. The whole
    document (when it is small enough, kimi.fileContextTokens) is tried first, then `context_lines` around the
    selection, halved until it fits.

    A local estimate decides clear cases with no network call; close calls ask the API's estimator.
    """
    reserve = job.settings.max_tokens or job.model.default_max_tokens
    budget = job.model.context_length - reserve
    lines = job.settings.context_lines
    whole = fits_whole(job.text, job.settings.file_context_tokens)
    while True:
        messages = build_prompt(job, lines, whole_file=whole)
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
        if whole:
            whole = False  # the window around the selection next, at full size
            continue
        if lines == 0:
            break
        lines //= 2
    needed = local + reserve
    fits = larger_windows(job.model.id, needed, candidates)
    hint = f" Models that would fit: {', '.join(fits[:5])}." if fits else " No known model has a window that large."
    raise errors.Refused(
        f"The selection is too large for {job.model.id}: about {local:,} tokens of prompt plus {reserve:,} reserved "
        f"for the reply, but the window is {job.model.context_length:,} tokens. Select less code.{hint}"
    )


def check_vision(job: Job, candidates: Iterable[ModelInfo]) -> None:
    """Images only go to models that can see; otherwise say which can, before anything is sent."""
    if job.images and not job.model.vision:
        seeing = [m.id for m in current(candidates) if m.vision]
        raise errors.Refused(
            f"{job.model.id} cannot see images, so nothing was sent. Models with vision: "
            f"{', '.join(seeing[:6]) or 'none known'} (set kimi.model, or declare vision in "
            "kimi.customModels)."
        )


async def run_job(
    job: Job, client: Chat, sink: Sink, candidates: Iterable[ModelInfo] = (), tools: Optional[ToolBox] = None
) -> Outcome:
    """Runs one action to completion, including any rounds of tool calls. Raises KimiError; cancellation
    propagates (nothing to undo)."""
    from kimi_lsp.kimi.pricing import add_usage, cost, currency_for, normalise_usage
    from kimi_lsp.kimi.rules import chat_body, thinks  # loads settings' pydantic on first use

    began = time.monotonic()
    candidates = list(candidates) or list(BUILTIN_MODELS.values())
    check_vision(job, candidates)
    if job.history is not None:  # a follow-up: the conversation as it was sent, then the new turn
        messages = job.history + job.follow_up
    else:
        messages = await fit_prompt(job, client, candidates) + job.follow_up  # turns go after the cached prompt
    sent = list(messages)
    thinking = thinks(job.model, job.settings)
    specs = tools.specs() if tools else None
    sink.status("thinking" if thinking else "waiting for the first token")
    reasoning, rounds, searches = "", 0, 0
    usage: dict[str, int] = {}
    deadline = began + job.settings.request_timeout  # one budget for the whole job: every round and all tool work
    try:
        # Each stream gets what is left of the budget and ends itself cleanly (closing its connection); this outer
        # limit, a little later, is the net for tool work.
        async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + GRACE):
            while True:
                last_round = specs is not None and rounds >= job.settings.max_tool_rounds
                body = chat_body(
                    job.model,
                    job.settings,
                    messages,
                    tools=specs,
                    tool_choice="none" if last_round else None,
                    prompt_tokens=estimate_tokens(messages),
                )
                reply = await client.stream_chat(
                    body,
                    sink.delta,
                    on_sent=sink.sent,
                    timeout=max(0.01, deadline - time.monotonic()),
                    status=sink.status,
                )
                reasoning += reply.reasoning
                usage = add_usage(usage, normalise_usage(reply.usage))
                if not (tools and reply.finish_reason == "tool_calls" and reply.tool_calls) or last_round:
                    break
                rounds += 1
                messages = messages + [_assistant_turn(reply, thinking)]
                for index, call in enumerate(reply.tool_calls):
                    searches += call.name == "$web_search"
                    if index < tools.calls_per_round:
                        sink.status(tools.describe(call))
                        result = await tools.run(call, deadline)
                    else:  # every call still needs its tool message, or the API rejects the next round
                        result = (
                            f"error: not run: at most {tools.calls_per_round} tool calls run per round; "
                            "call the rest in the next round if they are still needed"
                        )
                    messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})
    except TimeoutError:
        raise errors.TimedOut(
            f"Kimi did not finish within {job.settings.request_timeout:g} s (kimi.requestTimeout), "
            "counting every round of tool calls."
        ) from None
    except errors.ModelNotFound as exc:
        if (note := retirement(job.model)) is None:
            raise
        raise errors.ModelNotFound(
            f"{exc.message} {note}",
            model=exc.model,
            successor=job.model.successor,
            status=exc.status,
            request_id=exc.request_id,
            api_message=exc.api_message,
        ) from None
    currency = currency_for(job.settings)
    out = Outcome(
        request_id=job.request_id,
        model=reply.model or job.model.id,
        text=reply.content.strip("\n"),
        reasoning=reasoning,
        usage=usage or None,
        cost=cost(usage, job.model.price(currency), currency, searches),
        web_searches=searches,
        sent=sent,
        finish_reason=reply.finish_reason,
        elapsed_ms=int((time.monotonic() - began) * 1000),
    )
    if reply.finish_reason == "length":
        if not reply.content.strip() and reply.reasoning:
            raise errors.KimiError(
                f"{job.model.id} spent the whole token budget on thinking and wrote no answer. Raise kimi.maxTokens "
                "(Moonshot advises at least 16000 for thinking models)"
                + (" or turn kimi.thinking off." if job.model.thinking == "switchable" else ".")
            )
        if job.action.edits:
            raise errors.KimiError(
                "The answer was cut off by the token limit (finish_reason: length), so it was not "
                "applied. Raise kimi.maxTokens or select less code."
            )
    if job.action.edits and len(reply.content) > MAX_EDIT_REPLY:
        raise errors.KimiError(
            f"Kimi's answer is {len(reply.content):,} characters long, more than the "
            f"{MAX_EDIT_REPLY:,} an edit may be, so nothing was changed. Select less code."
        )
    content = clean_code(reply.content) if job.action.edits else reply.content  # no NUL or lone surrogate
    if job.action.output == "altText":
        out.new_code = " ".join(content.split())
        if not out.new_code:
            raise errors.KimiError("Kimi returned no alt text, so nothing was changed.")
    elif job.action.output == "comment":
        if not out.text.strip():
            raise errors.KimiError("Kimi returned an empty answer.")
        out.new_code = clean_code(out.text)
    elif job.action.edits:
        code = strip_fences(content)
        if not code.strip():
            raise errors.KimiError("Kimi returned no code, so nothing was changed.")
        out.new_code = fit_to_selection(job.selection, code) if job.action.output == "replace" else code
    elif not out.text.strip():
        raise errors.KimiError("Kimi returned an empty answer.")
    return out


def _assistant_turn(reply: Reply, thinking: bool) -> dict[str, Any]:
    """The assistant's tool-call message as it must be replayed: thinking models keep their reasoning_content."""
    turn: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content,
        "tool_calls": [c.to_message() for c in reply.tool_calls],
    }
    if thinking or reply.reasoning:
        turn["reasoning_content"] = reply.reasoning
    return turn
