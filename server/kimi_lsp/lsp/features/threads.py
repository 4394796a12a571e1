"""Conversations over LSP: every answer (explain, ask) is a thread; follow-ups continue it; threads are kept per
workspace on disk (core.threads) and listed, shown, exported, deleted, and their code applied as a proposal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Optional

from lsprotocol import types as lsp

from kimi_lsp.lsp.convert import line_span, range_at
from kimi_lsp.lsp.feature import Feature, command_table

if TYPE_CHECKING:  # core.threads (json, uuid, hashlib) loads with the first conversation, not at start-up
    from kimi_lsp.core.pipeline import Job, Outcome
    from kimi_lsp.core.threads import Thread, ThreadStore
    from kimi_lsp.lsp.server import KimiLanguageServer

log = logging.getLogger(__name__)
HANDLERS, _handles = command_table()
LOADED = 8  # threads kept in memory (a thread holds its prompts: the files it was asked about)


class ThreadsFeature(Feature):
    """Owns the workspace's thread store and the threads loaded from it; disk work runs in a worker thread."""

    def __init__(self, ls: KimiLanguageServer) -> None:
        super().__init__(ls)
        self._store: Optional[ThreadStore] = None
        self.loaded: OrderedDict[str, Thread] = OrderedDict()  # the most recent few; the rest are read from disk
        self._lock = asyncio.Lock()  # one write at a time: turns of one thread land in order

    @property
    def store(self) -> ThreadStore:
        from kimi_lsp.core.threads import ThreadStore

        if self._store is None:
            folders = sorted(f.uri for f in self.ls.workspace.folders.values())
            self._store = ThreadStore(folders[0] if folders else (self.ls.workspace.root_uri or "no-workspace"))
        return self._store

    async def get(self, thread_id: str) -> Optional[Thread]:
        if thread_id in self.loaded:
            self.loaded.move_to_end(thread_id)
            return self.loaded[thread_id]
        thread = await asyncio.to_thread(self.store.load, thread_id)
        if thread is not None:
            self.keep(thread)
        return thread

    def keep(self, thread: Thread) -> None:
        self.loaded[thread.id] = thread
        self.loaded.move_to_end(thread.id)
        while len(self.loaded) > LOADED:
            self.loaded.popitem(last=False)

    async def save(self, thread: Thread) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self.store.save, thread)
            except OSError as exc:  # a full disk or a read-only home must not lose the answer: say so, go on
                log.warning("could not save conversation %s: %s", thread.id, exc)
                self.ls.notice_once(
                    "threads-unsaved",
                    f"Kimi: conversations cannot be saved ({exc.strerror or exc}); they last until the server stops.",
                    lsp.MessageType.Warning,
                )

    async def record(
        self,
        job: Job,
        outcome: Outcome,
        uri: Optional[str],
        question: str,
        references: list[str],
        note: str,
    ) -> Thread:
        """The answer as a turn of the job's thread (a new thread for a first request), saved."""
        from kimi_lsp.core.threads import Turn, new_thread, without_images

        thread = await self.get(job.thread_id) if job.thread_id else None
        if thread is None:
            title = question or f"{job.action.title.removeprefix('Kimi: ')}: {job.path or 'selection'}"
            selection = {"start": job.start, "end": job.end, "text": job.selection} if job.end > job.start else None
            thread = new_thread(
                title, outcome.model, job.action.key, uri=uri, selection=selection, language=job.language
            )
        answer: dict[str, Any] = {"role": "assistant", "content": outcome.text or "(no answer)"}
        if outcome.reasoning:
            answer["reasoning_content"] = outcome.reasoning
        if job.thread_id and job.history is not None:  # the stored history, not the trimmed one that was sent
            sent = thread.messages + without_images(job.follow_up)
        else:
            sent = without_images(outcome.sent)
        thread.messages = [*sent, answer]
        thread.turns.append(
            Turn(
                question=question,
                answer=outcome.text,
                reasoning=outcome.reasoning,
                model=outcome.model,
                references=references,
                note=note,
                usage=outcome.usage,
                cost=outcome.cost,
                at=time.time(),
            )
        )
        thread.model, thread.updated = outcome.model, time.time()
        self.keep(thread)
        await self.save(thread)
        return thread


def _thread_arg(args: Any) -> str:
    from kimi_lsp.lsp.args import ThreadArg, parse_args

    return parse_args(ThreadArg, args).threadId


async def _need(ls: KimiLanguageServer, thread_id: str) -> Thread:
    from pygls.exceptions import JsonRpcInvalidParams

    thread = await ThreadsFeature.of(ls).get(thread_id)
    if thread is None:
        raise JsonRpcInvalidParams(f"no conversation {thread_id!r} in this workspace")
    return thread


@_handles("kimi.threads")
async def list_threads(ls: KimiLanguageServer, *args: Any) -> dict:
    from kimi_lsp.lsp.args import ExplanationArg, parse_args

    a = parse_args(ExplanationArg, args)  # {uri?}
    feature = ThreadsFeature.of(ls)
    threads = await asyncio.to_thread(feature.store.all)
    return {"threads": [t.summary() for t in threads if a.uri is None or t.uri == a.uri]}


@_handles("kimi.thread")
async def show_thread(ls: KimiLanguageServer, *args: Any) -> dict:
    return (await _need(ls, _thread_arg(args))).to_json()


@_handles("kimi.deleteThread")
async def delete_thread(ls: KimiLanguageServer, *args: Any) -> dict:
    thread_id = _thread_arg(args)
    feature = ThreadsFeature.of(ls)
    feature.loaded.pop(thread_id, None)
    return {"deleted": await asyncio.to_thread(feature.store.delete, thread_id)}


@_handles("kimi.exportThread")
async def export_thread(ls: KimiLanguageServer, *args: Any) -> dict:
    from kimi_lsp.core.threads import markdown

    thread = await _need(ls, _thread_arg(args))
    return {"threadId": thread.id, "title": thread.title, "markdown": markdown(thread)}


@_handles("kimi.applyFromThread")
async def apply_from_thread(ls: KimiLanguageServer, *args: Any) -> dict:
    """A code block of an answer, as an edit of the code the conversation started from (a proposal where the client
    shows them)."""
    from kimi_lsp.core.actions import APPLY_FROM_THREAD
    from kimi_lsp.core.edits import fit_to_selection
    from kimi_lsp.core.pipeline import Job, Outcome
    from kimi_lsp.core.request import new_request_id
    from kimi_lsp.core.threads import block_target, code_blocks
    from kimi_lsp.lsp.args import ApplyArg, parse_args
    from kimi_lsp.lsp.features import proposals
    from kimi_lsp.lsp.features.results import apply_outcome

    a = parse_args(ApplyArg, args)
    thread = await _need(ls, a.threadId)
    spec = APPLY_FROM_THREAD

    def refused(message: str) -> dict:
        ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Warning, message=f"{spec.title}: {message}"))
        return {"applied": False, "error": {"code": "refused", "message": message}}

    if not 0 <= a.turn < len(thread.turns):
        return refused(f"the conversation has no turn {a.turn}.")
    blocks = code_blocks(thread.turns[a.turn].answer)
    if not 0 <= a.block < len(blocks):
        return refused(f"that answer has no code block {a.block}.")
    target = block_target(thread.turns[a.turn].answer, a.block)
    if target is not None:  # the block names its file and lines: there
        found = _named_target(ls, *target)
        if isinstance(found, str):
            return refused(found)
        uri, doc, start, end = found
        text = doc.source[start:end]
    else:  # else the code the conversation started from, where it is now
        uri = thread.uri
        doc = ls.document(thread.uri) if thread.uri else None
        if doc is None or thread.selection is None:
            return refused("the conversation did not start from code in an open file, and the block names no file.")
        start, end, text = thread.selection["start"], thread.selection["end"], thread.selection["text"]
        if doc.source[start:end] != text:
            found_at = doc.source.find(text)
            if found_at < 0 or doc.source.find(text, found_at + 1) >= 0:
                return refused("the code the conversation started from is no longer in the file (or is there twice).")
            start, end = found_at, found_at + len(text)
    settings = await ls.config.for_request(uri)  # the settings of the file the code goes to
    job = Job(
        spec, doc.source, start, end, settings, ls.model_for(settings), new_request_id(), language=thread.language
    )
    code = blocks[a.block]
    outcome = Outcome(job.request_id, thread.turns[a.turn].model, text=code, new_code=fit_to_selection(text, code))
    if proposals.wanted(ls, settings):
        return {"threadId": thread.id, **proposals.propose(ls, job, outcome, uri, doc.version)}
    rng = range_at(doc, start, end)
    applied, message = await apply_outcome(ls, job, outcome, uri, rng, doc.version)
    return {"threadId": thread.id, "applied": applied, **({"message": message} if message else {})}


def _named_target(ls: KimiLanguageServer, path: str, first: int, last: int) -> Any:
    """(uri, document, start, end) of lines `first`..`last` of a workspace file open in the editor, or why not: the
    path goes through the tools' sandbox, so a block cannot name a file the model may not read."""
    from kimi_lsp.core.tools import ToolError

    try:
        real = ls.sandbox(ls.config.current()).resolve(path)
    except ToolError as exc:
        return f"{path}: {str(exc).removeprefix('error: ')}."
    found = ls.open_document(str(real))
    if found is None:
        return f"open {path} in the editor first: edits go only to open files."
    uri, doc = found
    if first > len(doc.lines):
        return f"{path} has no line {first}."
    return (uri, doc, *line_span(doc, first - 1, last))
