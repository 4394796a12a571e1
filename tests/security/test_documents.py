"""Issue #11/#12: one LSP line model everywhere; every position clamped at the edge; edits that land exactly.

The reference below is deliberately naive: a line ends after each "\\r\\n", "\\r" or "\\n" and nowhere else, columns
count code units of the negotiated encoding, and a position is clamped the LSP way (past the end of a line: the
line's end before its break; past the last line: the document's end; inside a character: its start). The server's
documents, positions and edits are checked against it with hypothesis, and end to end over the real server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp
from pytest_lsp import client_capabilities

from harness import AVERAGE, base, editor, rng
from kimi_lsp.core.actions import BUILTIN_ACTIONS
from kimi_lsp.core.edits import fit_to_selection, minimal_edits, strip_fences
from kimi_lsp.core.pipeline import Job, Outcome, context_around
from kimi_lsp.fake import Fault
from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.lsp.documents import FastWorkspace
from kimi_lsp.lsp.features.results import plan_edits
from kimi_lsp.settings import Settings
from lsp_reference import ref_apply, ref_lines, ref_offset, ref_split, ref_valid

ENCODINGS = ["utf-16", "utf-8", "utf-32"]
URI = "file:///tmp/doc.py"
PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


PIECES = [
    "a",
    "b",
    "x = 1",
    " ",
    "\t",
    "\r\n",
    "\r",
    "\n",
    "\f",
    "\v",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
    "é",
    "中",
    "😀",
    "𝔸",
]
texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
new_texts = st.lists(st.sampled_from(PIECES + ["\n", "\n"]), max_size=12).map("".join)
positions = st.builds(lambda line, ch: (line, ch), st.integers(0, 14), st.integers(0, 30))


def open_doc(text: str, enc: str = "utf-16"):
    ws = FastWorkspace(None, lsp.TextDocumentSyncKind.Incremental, [], enc)
    ws.put_text_document(lsp.TextDocumentItem(uri=URI, language_id="python", version=1, text=text))
    return ws, ws.get_text_document(URI)


def P(line: int, ch: int) -> lsp.Position:
    return lsp.Position(line=line, character=ch)


# -- the line model ----------------------------------------------------------------------------------------------


@PROPERTY
@given(text=texts)
def test_split_lines_is_lsp_exact(text):
    from kimi_lsp.core.lines import split_lines

    assert split_lines(text) == ref_split(text)
    assert split_lines(text, keepends=False) == [text[s:c] for s, c, e in ref_lines(text) if e > s]
    assert "".join(split_lines(text)) == text


@PROPERTY
@given(text=texts, enc=st.sampled_from(ENCODINGS), probes=st.lists(positions, max_size=8))
def test_document_lines_offsets_and_positions_follow_lsp(text, enc, probes):
    _, doc = open_doc(text, enc)
    assert list(doc.lines) == ref_split(text)
    for line, ch in probes:
        assert doc.offset_at_position(P(line, ch)) == ref_offset(text, line, ch, enc), (line, ch)
    for offset in range(len(text) + 1):
        pos = doc.client_position_at_offset(offset)
        assert ref_valid(text, pos, enc), (offset, pos)
        # the position of an offset between "\r" and "\n" is the one before "\r"
        assert ref_offset(text, pos.line, pos.character, enc) == offset - (text[offset - 1 : offset + 1] == "\r\n")


@PROPERTY
@given(
    text=texts,
    enc=st.sampled_from(ENCODINGS),
    changes=st.lists(st.tuples(positions, positions, new_texts), min_size=1, max_size=6),
)
def test_incremental_changes_keep_the_servers_copy_in_step(text, enc, changes):
    """Whatever the editor sends (out-of-range columns and lines included), the server's copy is the editor's."""
    ws, doc = open_doc(text, enc)
    for version, (a, b, new) in enumerate(changes, 2):
        a, b = sorted([a, b])
        s, e = ref_offset(text, *a, enc), ref_offset(text, *b, enc)
        text = text[:s] + new + text[e:]
        ws.update_text_document(
            lsp.VersionedTextDocumentIdentifier(uri=URI, version=version),
            lsp.TextDocumentContentChangePartial(range=lsp.Range(start=P(*a), end=P(*b)), text=new),
        )
        assert doc.source == text
        assert list(doc.lines) == ref_split(text)


def test_typing_below_a_form_feed_stays_in_step():
    ws, doc = open_doc("x\f y\nz\n")
    ws.update_text_document(
        lsp.VersionedTextDocumentIdentifier(uri=URI, version=2),
        lsp.TextDocumentContentChangePartial(range=lsp.Range(start=P(1, 0), end=P(1, 0)), text="Q"),
    )
    assert doc.source == "x\f y\nQz\n"


def test_a_column_past_the_end_of_the_last_line_is_its_end():
    _, doc = open_doc("abc")
    assert doc.offset_at_position(P(0, 10)) == 3
    assert doc.offset_at_position(P(0, 4)) == 3


def test_a_range_ending_between_cr_and_lf_keeps_the_cr():
    ws, doc = open_doc("ab\r\ncd")
    ws.update_text_document(
        lsp.VersionedTextDocumentIdentifier(uri=URI, version=2),
        lsp.TextDocumentContentChangePartial(range=lsp.Range(start=P(0, 1), end=P(0, 3)), text="X"),
    )
    assert doc.source == "aX\r\ncd"


# -- positions clamped at the edge, edits built from them ---------------------------------------------------------


def job_for(spec: str, text: str, start: int, end: int) -> Job:
    return Job(
        action=BUILTIN_ACTIONS[spec],
        text=text,
        start=start,
        end=end,
        settings=Settings(),
        model=BUILTIN_MODELS["kimi-k2.5"],
        request_id="t",
    )


def clamp_selection(doc, a: tuple[int, int], b: tuple[int, int]):
    from kimi_lsp.lsp.args import Range as _Range
    from kimi_lsp.lsp.features.actions import selection_of

    return selection_of(
        doc,
        _Range.model_validate({"start": {"line": a[0], "character": a[1]}, "end": {"line": b[0], "character": b[1]}}),
    )


@PROPERTY
@given(text=texts, enc=st.sampled_from(ENCODINGS), a=positions, b=positions, new=new_texts)
def test_replace_lands_exactly_where_the_selection_was(text, enc, a, b, new):
    """Random document, random (also out-of-range or reversed) selection, random reply: applied the LSP way, the
    server's edits give exactly selection -> reply, with only valid positions."""
    _, doc = open_doc(text, enc)
    r, start, end = clamp_selection(doc, a, b)
    lo, hi = sorted([ref_offset(text, *a, enc), ref_offset(text, *b, enc)])
    assert (start, end) == (lo, hi)
    assert ref_valid(text, r.start, enc) and ref_valid(text, r.end, enc)
    code = fit_to_selection(text[start:end], new)
    edits = plan_edits(doc, job_for("refactor", text, start, end), Outcome("t", "m", new_code=code))
    assert all(ref_valid(text, e.range.start, enc) and ref_valid(text, e.range.end, enc) for e in edits)
    assert ref_apply(text, edits, enc) == text[:start] + code + text[end:]


@PROPERTY
@given(
    text=texts,
    enc=st.sampled_from(ENCODINGS),
    a=positions,
    b=positions,
    new=new_texts,
    spec=st.sampled_from(["insertBefore", "insertAfter"]),
)
def test_inserts_land_at_a_line_boundary(text, enc, a, b, new, spec):
    _, doc = open_doc(text, enc)
    r, start, end = clamp_selection(doc, a, b)
    job = job_for("mockup", text, start, end)
    job.action = dataclasses.replace(BUILTIN_ACTIONS["mockup"], output=spec)
    edits = plan_edits(doc, job, Outcome("t", "m", new_code=new))
    assert len(edits) == 1 and all(ref_valid(text, p, enc) for p in (edits[0].range.start, edits[0].range.end))
    at = ref_offset(text, edits[0].range.start.line, edits[0].range.start.character, enc)
    assert at in {s for s, _, _ in ref_lines(text)} | {len(text)}  # a line start, or the end
    assert ref_apply(text, edits, enc) == text[:at] + edits[0].new_text + text[at:]
    assert new in edits[0].new_text


@PROPERTY
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["", "\f", "\u2028", "\x85", "é😀", " "]), st.sampled_from(["\n", "\r\n", "\r"])),
        min_size=1,
        max_size=8,
    ),
    data=st.data(),
)
def test_unchanged_lines_get_no_edit(rows, data):
    """Changing one line of a selection makes one edit, on that line only: other lines, marks and folds stay put."""
    old = [f"line{i}{junk}{brk}" for i, (junk, brk) in enumerate(rows)]
    line = data.draw(st.integers(0, len(old) - 1))
    new = old[:line] + ["CHANGED\n"] + old[line + 1 :]
    edits = minimal_edits("".join(old), "".join(new), 0)
    at = sum(len(x) for x in old[:line])
    assert [tuple(e) for e in edits] == [(at, at + len(old[line]), "CHANGED\n")]


def test_neovim_line_wise_end_is_the_end_of_the_line():
    """Neovim 0.7 ends a line-wise selection at character = len(line) + 1: the end of that line, not the next."""
    text = "def f():\n    return 1\nprint(f())\n"
    _, doc = open_doc(text)
    r, start, end = clamp_selection(doc, (0, 0), (1, len("    return 1") + 1))
    assert (r.end.line, r.end.character) == (1, len("    return 1"))
    assert text[start:end] == "def f():\n    return 1"


@PROPERTY
@given(text=texts, a=st.integers(0, 40), b=st.integers(0, 40), n=st.integers(0, 3))
def test_context_counts_lsp_lines(text, a, b, n):
    def snap(o: int) -> int:
        o = min(o, len(text))
        return o - (text[o - 1 : o + 1] == "\r\n")

    start, end = sorted([snap(a), snap(b)])
    lines = ref_lines(text)
    first = max(k for k, (s, _, _) in enumerate(lines) if s <= start)
    last = max(k for k, (s, _, _) in enumerate(lines) if s <= end)
    base_ = last if end == 0 or lines[last][0] == end else last + 1
    stop = lines[base_ + n][0] if base_ + n < len(lines) else len(text)
    want = (text[lines[max(0, first - n)][0] : start], text[end:stop]) if n else ("", "")
    assert context_around(text, start, end, n) == want


def test_cli_line_ranges_count_lsp_lines():
    from kimi_lsp.cli import _offsets
    from kimi_lsp.core.edits import apply_edits
    from kimi_lsp.core.outputs import place

    def placed(text: str, start: int, end: int, output: str) -> str:
        job = job_for("mockup", text, start, end)
        job.action = dataclasses.replace(BUILTIN_ACTIONS["mockup"], output=output)
        return apply_edits(text, place(job, "NEW"))

    text = "a\fb\nc\u2028d\r\ne\rf\n"
    start, end = _offsets(text, 2, 3)
    assert text[start:end] == "c\u2028d\r\ne\r"
    assert placed(text, start, end, "insertBefore") == "a\fb\nNEW\nc\u2028d\r\ne\rf\n"
    assert placed(text, start, end, "insertAfter") == "a\fb\nc\u2028d\r\ne\rNEW\nf\n"
    assert placed("x\ry", 0, 2, "insertAfter") == "x\rNEW\ny"


# -- replies --------------------------------------------------------------------------------------------------

_OLD_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n`]*\n(.*?)^\1[ \t]*$", re.M | re.S)


@PROPERTY
@given(reply=st.lists(st.sampled_from(["```", "````", "py", " ", "x", "\n", "\n", "`"]), max_size=25).map("".join))
def test_strip_fences_finds_the_same_block_as_before(reply):
    m = _OLD_FENCE.search(reply)
    if m:
        assert strip_fences(reply) == m.group(2)


def test_strip_fences_is_linear():
    """100 KB of fence openers without a closer froze the server for 16 s (a backtracking regex)."""
    reply = "```x\n" * 20_000
    began = time.perf_counter()
    strip_fences(reply)
    strip_fences("```\n" + "a\n```py\n" * 12_000)
    assert time.perf_counter() - began < 0.5


@pytest.mark.parametrize(
    "reply,code", [("~~~\nx\n~~~\n", "x\n"), ("```\r\nx\r\n```\r\n", "x\r\n"), ("````\n```\n```\n````", "```\n```\n")]
)
def test_strip_fences_cases(reply, code):
    assert strip_fences(reply) == code


# -- end to end, over the real server -------------------------------------------------------------------------

CODE = AVERAGE


def encoding_of(profile: str) -> str:
    general = client_capabilities(profile).general
    return (general.position_encodings or ["utf-16"])[0] if general else "utf-16"


def last_edits(ed) -> list:
    edit = ed.applied[-1].edit
    if edit.document_changes:
        return [e for change in edit.document_changes for e in change.edits]
    return [e for edits in (edit.changes or {}).values() for e in edits]


async def test_line_wise_selection_ending_past_the_line_lands_exactly(profile, fake, tmp_path):
    line4 = "    return total / len(values)  # BUG: empty list"
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 4, len(line4) + 1)})
        assert r["applied"] is True, r
        edits = last_edits(ed)
        enc = encoding_of(profile)
        assert all(ref_valid(CODE, p, enc) for e in edits for p in (e.range.start, e.range.end)), edits
        assert ref_apply(CODE, edits, enc) == CODE.replace(line4 + "\n", line4 + "\n# refactored by fake-kimi\n")


FF_CODE = (
    "/* gcc */\n\f\ndef first():\n    return 1\n\f\n# section\u2028two é😀\n"
    "def second(values):\n    total = 0\n    return total\n"
)


async def test_form_feeds_and_line_separators_are_not_line_breaks(profile, fake, tmp_path):
    enc = encoding_of(profile)
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("gcc.py", FF_CODE)
        # typing below the form feeds: the server's copy must follow (sent as an editor does, incrementally)
        change = lsp.Range(start=P(7, 4), end=P(7, 9))
        text = ref_apply(FF_CODE, [lsp.TextEdit(range=change, new_text="total")], enc)
        ed.versions[uri] += 1
        ed.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=ed.versions[uri]),
                content_changes=[lsp.TextDocumentContentChangePartial(range=change, text="total")],
            )
        )
        r = await ed.command(
            "kimi.refactor", {"uri": uri, "range": rng(6, 0, 9, 0), "instruction": "rename total to acc"}
        )
        assert r["applied"] is True, r
        assert ref_apply(text, last_edits(ed), enc) == text.replace("total", "acc")


async def test_stale_edit_refused_after_close_and_reopen(profile, fake, tmp_path):
    fake.script(Fault(kind="slow_first", delay=1.0))
    async with editor(profile, tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        task = asyncio.ensure_future(
            ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 5, 0), "instruction": "rename total to acc"})
        )
        await ed.wait_for(lambda: fake.chat_requests(), what="the request to reach the fake")
        ed.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )
        other = "".join(f"line_{i} = {i}\n" for i in range(10))
        ed.open("a.py", other)  # versions start again at 1
        r = await task
        assert r["applied"] is False and "reopened" in r["message"], r
        assert ed.applied == [] and ed.texts[uri] == other


async def test_nul_and_lone_surrogates_never_reach_the_document(fake, tmp_path):
    fake.script(Fault(kind="reply", content="```python\nx = 1\x00\ny = '\ud800'\n```"))
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", "a = 1\nb = 2\nc = 3\n")
        r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 2, 0)})
        assert r["applied"] is True, r
        assert ed.texts[uri] == "x = 1\ny = '\ufffd'\nc = 3\n"


async def test_an_edit_reply_over_the_limit_is_refused_whole(fake, tmp_path):
    from kimi_lsp.core.edits import MAX_EDIT_REPLY

    fake.configure(chunk_chars=64 * 1024)
    body = "x = 1\n" * (MAX_EDIT_REPLY // 6 + 1)
    fake.script(Fault(kind="reply", content=f"```python\n{body}```"))
    async with editor("visual-studio-code", tmp_path, base(fake)) as ed:
        uri = ed.open("a.py", CODE)
        r = await ed.command("kimi.refactor", {"uri": uri, "range": rng(0, 0, 5, 0)}, timeout=60)
        assert r["applied"] is False and f"{MAX_EDIT_REPLY:,}" in r["error"]["message"], r
        assert ed.applied == [] and ed.texts[uri] == CODE
