"""Ghost text: `textDocument/inlineCompletion` answered by Kimi in partial mode, and `kimi.nextEdit`.

Fast and cheap by construction: a server-side debounce; a newer request for the same document cancels the older
one (its HTTP stream closed at once), as `$/cancelRequest` does; an LRU of recent completions and typing through a
shown one answer with no network call; and completions go out only when they cannot delay what the user asked
for (never queued, never the last free slot of the account's rate limit, paused after a 429).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp

from kimi_lsp import errors
from kimi_lsp.lsp.convert import offset_at, range_at, range_json
from kimi_lsp.lsp.feature import Feature, command_table

if TYPE_CHECKING:  # core.completion (and core.prompts) load with the first completion, not at start-up
    from kimi_lsp.core.completion import CompletionCache, Cursor
    from kimi_lsp.kimi.models import ModelInfo
    from kimi_lsp.kimi.pricing import Ledger
    from kimi_lsp.lsp.server import KimiLanguageServer
    from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)
HANDLERS, _handles = command_table()
ACCEPTED = "kimi.completionAccepted"
RECENT_EDITS = 5  # the user's last edits per document, for kimi.nextEdit
EDIT_CHARS = 400  # of each edit's old and new text kept
COMPLETION_TIMEOUT = 15.0  # seconds: ghost text that comes later is of no use
PAUSE_SHOWN = 10.0  # seconds a pause with no stated wait is reported in kimi.status


class CompletionFeature(Feature):
    """Owns the completion cache, the request in flight per document, the user's recent edits and the counts."""

    def __init__(self, ls: KimiLanguageServer) -> None:
        super().__init__(ls)
        self._cache: Optional[CompletionCache] = None
        self.running: dict[str, asyncio.Task[Any]] = {}
        # uri -> (line, old text, new text, what the last typing added) of the user's recent edits
        self.edits: dict[str, deque[tuple[int, str, str, str]]] = {}
        self._seen: dict[str, int] = {}  # uri -> the number of the last document edit read
        self.counts = {"requests": 0, "shown": 0, "accepted": 0, "fromCache": 0, "api": 0}
        self._ledger: Optional[Ledger] = None  # what completions cost (kimi.pricing.Ledger), made on first use
        self.paused: Optional[str] = None
        self._paused_until = 0.0
        self._ids = 0
        self.pending: dict[str, tuple[int, lsp.InlineCompletionItem]] = {}  # uri -> a next edit waiting to be shown
        self.cursors: dict[str, int] = {}  # next-edit request id -> the cursor's offset

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            from kimi_lsp.kimi.pricing import Ledger

            self._ledger = Ledger()
        return self._ledger

    @property
    def cache(self) -> CompletionCache:
        if self._cache is None:
            from kimi_lsp.core.completion import CompletionCache

            self._cache = CompletionCache()
        return self._cache

    def register(self) -> None:
        @self.ls.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
        async def inline_completion(
            ls: KimiLanguageServer, params: lsp.InlineCompletionParams
        ) -> Optional[lsp.InlineCompletionList]:
            return await self.complete(params)

    def did_change(self, uri: str) -> None:
        """Keeps the user's last few edits (for kimi.nextEdit), from what the document recorded of its changes;
        typing on in the region the last edit made counts as that edit, as the user thinks of it."""
        self.pending.pop(uri, None)
        doc = self.ls.document(uri)
        log_ = getattr(doc, "recent_edits", None)
        if not log_:
            return
        seen = self._seen.get(uri, 0)
        edits = self.edits.setdefault(uri, deque(maxlen=RECENT_EDITS))
        for number, line, old, new in log_:
            if number <= seen:
                continue
            if edits and edits[-1][0] == line and edits[-1][3] and not old and "\n" not in new:
                at, was, made, _ = edits[-1]
                edits[-1] = (at, was, (made + new)[:EDIT_CHARS], made + new)
            elif edits and edits[-1][0] == line and old and new == "" and edits[-1][2].endswith(old):
                at, was, made, _ = edits[-1]  # a backspace over what was just typed
                edits[-1] = (at, was, made[: len(made) - len(old)], made[: len(made) - len(old)])
            else:
                edits.append((line, old, new, new))
        self._seen[uri] = log_[-1][0]

    def recent_edits(self, uri: str) -> list[str]:
        """The user's recent edits, oldest first, as the next-edit prompt lists them."""
        return [
            f"- line {line + 1}: {json.dumps(was, ensure_ascii=False)} -> {json.dumps(made, ensure_ascii=False)}"
            for line, was, made, _ in self.edits.get(uri, ())
        ]

    def did_close(self, uri: str) -> None:
        self._seen.pop(uri, None)
        self.edits.pop(uri, None)
        self.pending.pop(uri, None)
        if (task := self.running.pop(uri, None)) is not None:
            task.cancel()

    async def shutdown(self) -> None:
        for task in list(self.running.values()):
            task.cancel()

    # -- textDocument/inlineCompletion ---------------------------------------------------------------------------

    async def complete(self, params: lsp.InlineCompletionParams) -> Optional[lsp.InlineCompletionList]:
        from kimi_lsp.core.completion import cursor_at

        uri = params.text_document.uri
        doc = self.ls.document(uri)
        settings = await self.ls.config.settled(uri)
        if doc is None or not settings.completion.enabled:
            return None
        self.counts["requests"] += 1
        offset = offset_at(doc, params.position)
        if (held := self.pending.get(uri)) is not None and held[0] == offset:  # a next edit that starts here
            return lsp.InlineCompletionList(items=[held[1]])
        text, at, replace_from = doc.source, offset, offset
        info = params.context.selected_completion_info
        if info is not None:  # the suggest widget's item, as if accepted: complete after it
            replace_from = offset_at(doc, info.range.start)
            text = text[:replace_from] + info.text + text[offset:]
            at = replace_from + len(info.text)
        cursor = cursor_at(
            text,
            at,
            settings.completion.context_lines,
            self.ls.display_path(uri),
            _language(doc),
            self._others(uri, doc),
        )
        ghost = self.cache.get(cursor)
        if ghost is not None:
            self.counts["fromCache"] += 1
        else:
            ghost = await self._ask(uri, cursor, settings, debounce=_automatic(params))
        if not ghost:
            return lsp.InlineCompletionList(items=[])
        prefix = info.text if info is not None else ""
        return lsp.InlineCompletionList(items=[self.item(doc, replace_from, offset, prefix + ghost)])

    async def _ask(self, uri: str, cursor: Cursor, settings: Settings, *, debounce: bool) -> Optional[str]:
        """The completion from Kimi, in a task of its own: a newer request for the document cancels it (closing
        its stream), and so does a cancel of this request."""
        if (older := self.running.get(uri)) is not None:
            older.cancel()
        task = asyncio.ensure_future(self._fetch(cursor, settings, debounce))
        self.running[uri] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                return None  # replaced by a newer request: this one answers with nothing
            raise
        finally:
            if not task.done():
                task.cancel()  # $/cancelRequest: stop the stream now
            if self.running.get(uri) is task:
                del self.running[uri]

    async def _fetch(self, cursor: Cursor, settings: Settings, debounce: bool) -> Optional[str]:
        from kimi_lsp.core.completion import clean, messages, reply_limit
        from kimi_lsp.core.prompts import estimate_tokens
        from kimi_lsp.kimi.pricing import cost, currency_for, normalise_usage
        from kimi_lsp.kimi.rules import chat_body

        if debounce and settings.completion.debounce_ms:
            await asyncio.sleep(settings.completion.debounce_ms / 1000)
        model = self.model(settings)
        if model is None:
            return None
        conf = settings.model_copy(
            update={"model": model.id, "thinking": "disabled", "max_tokens": reply_limit(settings.completion.max_lines)}
        )
        sent = messages(cursor)
        # Not streamed: ghost text is shown whole, and a JSON reply ends at its last byte (a stream's end costs a
        # drain of what follows [DONE]; bench/NOTES.md, B8).
        body = chat_body(model, conf, sent, stream=False, prompt_tokens=estimate_tokens(sent))
        body["stop"] = ["\n\n\n", "```"]
        client = await self.ls.kimi(conf)
        try:
            reply = await client.stream_chat(body, _ignore, timeout=COMPLETION_TIMEOUT, background=True)
        except errors.RateLimited as exc:
            # Said until the wait has passed (a refusal for the tier's cap is looked at again shortly).
            self.paused = str(exc).removeprefix("Rate limit reached: ")
            self._paused_until = time.monotonic() + (exc.wait if exc.wait is not None else PAUSE_SHOWN)
            log.info("completion not sent: %s", exc)
            return None
        except errors.KimiError as exc:
            log.info("completion failed: %s", exc)
            return None
        self.paused = None
        self.counts["api"] += 1
        ghost = clean(reply.content, cursor, settings.completion.max_lines)
        usage = normalise_usage(reply.usage)
        currency = currency_for(conf)
        self.ledger.record(usage, cost(usage, model.price(currency), currency))
        self.cache.put(cursor, ghost)
        return ghost

    def model(self, settings: Settings) -> Optional[ModelInfo]:
        """The completion model, unless it always thinks (too slow and dear for ghost text): then say so, once."""
        from kimi_lsp.kimi.models import current

        conf = settings.model_copy(update={"model": settings.completion.model})
        model = self.ls.model_for(conf)
        if model.thinking != "always":
            return model
        fits = [m.id for m in current(self.ls.known_models(conf)) if m.thinking != "always"]
        self.ls.notice_once(
            f"completion-thinks:{model.id}",
            f"Kimi: {model.id} always thinks, so it cannot complete as you type; set kimi.completion.model to one "
            f"of {', '.join(fits[:6])} (they are sent with thinking off).",
            lsp.MessageType.Warning,
        )
        return None

    def item(self, doc: Any, start: int, end: int, text: str) -> lsp.InlineCompletionItem:
        """Ghost text replacing start..end, with the command that counts its acceptance."""
        self._ids += 1
        self.counts["shown"] += 1
        return lsp.InlineCompletionItem(
            insert_text=text,
            range=range_at(doc, start, end),
            command=lsp.Command(title="Kimi: completion accepted", command=ACCEPTED, arguments=[{"id": self._ids}]),
        )

    def _others(self, uri: str, doc: Any) -> tuple[tuple[str, str], ...]:
        """A few lines of up to three other open documents of the same language, in a stable order (the prompt's
        prefix stays the same from one keystroke to the next)."""
        from kimi_lsp.core.completion import snippet

        language = _language(doc)
        out = []
        for other in sorted(self.ls.workspace.text_documents):
            if language and other != uri and _language(self.ls.workspace.text_documents[other]) == language:
                out.append((self.ls.display_path(other), snippet(self.ls.workspace.text_documents[other].source)))
            if len(out) == 3:
                break
        return tuple(out)

    def status(self) -> dict[str, Any]:
        if self.paused is not None and time.monotonic() >= self._paused_until:
            self.paused = None
        return {
            **self.counts,
            "cost": self.ledger.to_json()["cost"],
            "paused": self.paused,
        }


def _ignore(kind: str, text: str) -> None:
    """Ghost text is shown whole: the stream's pieces are not forwarded."""


def _automatic(params: lsp.InlineCompletionParams) -> bool:
    return params.context.trigger_kind != lsp.InlineCompletionTriggerKind.Invoked


def _language(doc: Any) -> str:
    return getattr(doc, "language_id", None) or ""


@_handles(ACCEPTED)
async def accepted(ls: KimiLanguageServer, *args: Any) -> dict:
    CompletionFeature.of(ls).counts["accepted"] += 1
    return {"accepted": True}


def as_inline(ls: KimiLanguageServer, job: Any, edits: list[Any], uri: str) -> Optional[dict[str, Any]]:
    """A next edit that is one change starting at the cursor, as an inline completion item (JSON), held for the
    next inlineCompletion request at the cursor; None when it is not one."""
    feature = CompletionFeature.of(ls)
    cursor = feature.cursors.get(job.request_id)
    doc = ls.document(uri)
    if cursor is None or doc is None or len(edits) != 1 or doc.source != job.text:
        return None
    start, end, new = edits[0]
    old = job.text[start:end]
    same = 0
    while same < min(len(old), len(new)) and old[same] == new[same]:
        same += 1
    if start + same != cursor:
        return None
    old, new = old[same:], new[same:]
    tail = 0  # what the old and new text end with alike (the line break) is not part of the ghost text
    while tail < min(len(old), len(new)) and old[len(old) - 1 - tail] == new[len(new) - 1 - tail]:
        tail += 1
    item = feature.item(doc, cursor, end - tail, new[: len(new) - tail])
    feature.pending[uri] = (cursor, item)
    command, rng = item.command, range_json(item.range) or {}
    return {
        "insertText": item.insert_text,
        "range": rng,
        "position": rng.get("start"),  # the cursor: where the item starts
        "command": {"title": command.title, "command": command.command, "arguments": command.arguments}
        if command
        else None,
    }
