"""Equivalence check: `kimi_lsp.lsp.documents.FastTextDocument` against pygls' `TextDocument` on random edits.

Run: `.venv/bin/python bench/check_documents.py [N]`. Exits non-zero on the first difference. `bench/run.py`
runs it before B6 so a fast but wrong document class cannot pass the benchmark.
"""

from __future__ import annotations

import random
import sys

from lsprotocol import types as lsp
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from kimi_lsp.lsp.documents import FastTextDocument

ALPHABET = ["a", "b", " ", "\n", "\r\n", "\r", "é", "😋", "\t", "x = 1\n", "\u2028", "\f"]


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _random_text(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(n))


def _random_position(rnd: random.Random, lines: list[str]) -> lsp.Position:
    line = rnd.randint(0, len(lines) + 1)
    if line < len(lines):
        return lsp.Position(line=line, character=rnd.randint(0, _utf16_len(lines[line]) + 1))
    return lsp.Position(line=line, character=rnd.randint(0, 2))


def check(cases: int = 300, steps: int = 60, seed: int = 6) -> int:
    rnd = random.Random(seed)
    compared = 0
    for case in range(cases):
        text = _random_text(rnd, rnd.randint(0, 40))
        codec = PositionCodec(
            encoding=rnd.choice(
                [lsp.PositionEncodingKind.Utf16, lsp.PositionEncodingKind.Utf32, lsp.PositionEncodingKind.Utf8]
            )
        )
        ref = TextDocument("file:///t.py", text, version=1, position_codec=codec)
        fast = FastTextDocument("file:///t.py", text, version=1, position_codec=codec)
        for step in range(steps):
            lines = list(ref.lines)
            if rnd.random() < 0.03:
                change: object = lsp.TextDocumentContentChangeWholeDocument(text=_random_text(rnd, rnd.randint(0, 20)))
            else:
                a, b = _random_position(rnd, lines), _random_position(rnd, lines)
                if (b.line, b.character) < (a.line, a.character):
                    a, b = b, a  # pygls mishandles inverted ranges; editors never send them
                change = lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(start=a, end=b), text=_random_text(rnd, rnd.choice([0, 0, 1, 1, 2, 5]))
                )
            held = fast.lines if step % 3 == 0 else None  # a snapshot held across an edit must not change
            held_copy = tuple(held) if held is not None else None
            ref.apply_change(change)  # both mutate the positions the same way (clamping)
            fast.apply_change(change)
            if held is not None and tuple(held) != held_copy:
                print(f"SNAPSHOT CHANGED case {case} step {step}")
                return 1
            compared += 1
            if ref.source != fast.source or tuple(ref.lines) != tuple(fast.lines):
                print(f"MISMATCH case {case} step {step}: {change!r}\nref:  {ref.source!r}\nfast: {fast.source!r}")
                return 1
            p = _random_position(rnd, list(ref.lines))
            q = lsp.Position(line=p.line, character=p.character)
            if ref.offset_at_position(p) != fast.offset_at_position(q):
                print(
                    f"OFFSET MISMATCH case {case} step {step}: {p} -> {ref.offset_at_position(p)} vs "
                    f"{fast.offset_at_position(q)} in {ref.source!r}"
                )
                return 1
    print(f"documents: FastTextDocument matches pygls TextDocument on {compared} random edits")
    return 0


if __name__ == "__main__":
    raise SystemExit(check(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
