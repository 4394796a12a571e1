"""Equivalence check: `kimi_lsp.lsp.documents.FastTextDocument` against an LSP-exact reference on random edits
(tests/lsp_reference.py: lines end only at \\r\\n, \\r and \\n; pygls' own TextDocument splits on more).

Run: `.venv/bin/python bench/check_documents.py [N]`. Exits non-zero on the first difference. `bench/run.py`
runs it before B6 so a fast but wrong document class cannot pass the benchmark.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from lsprotocol import types as lsp
from pygls.workspace.position_codec import PositionCodec

from kimi_lsp.lsp.documents import FastTextDocument

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lsp_reference import ref_offset, ref_split

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
    encodings = {
        lsp.PositionEncodingKind.Utf16: "utf-16",
        lsp.PositionEncodingKind.Utf32: "utf-32",
        lsp.PositionEncodingKind.Utf8: "utf-8",
    }
    for case in range(cases):
        text = _random_text(rnd, rnd.randint(0, 40))
        kind = rnd.choice(list(encodings))
        enc = encodings[kind]
        fast = FastTextDocument("file:///t.py", text, version=1, position_codec=PositionCodec(encoding=kind))
        for step in range(steps):
            lines = ref_split(text)
            if rnd.random() < 0.03:
                new = _random_text(rnd, rnd.randint(0, 20))
                change: object = lsp.TextDocumentContentChangeWholeDocument(text=new)
                text = new
            else:
                a, b = _random_position(rnd, lines), _random_position(rnd, lines)
                if (b.line, b.character) < (a.line, a.character):
                    a, b = b, a  # editors never send inverted ranges
                new = _random_text(rnd, rnd.choice([0, 0, 1, 1, 2, 5]))
                change = lsp.TextDocumentContentChangePartial(range=lsp.Range(start=a, end=b), text=new)
                s, e = ref_offset(text, a.line, a.character, enc), ref_offset(text, b.line, b.character, enc)
                text = text[:s] + new + text[max(s, e) :]
            held = fast.lines if step % 3 == 0 else None  # a snapshot held across an edit must not change
            held_copy = tuple(held) if held is not None else None
            fast.apply_change(change)
            if held is not None and tuple(held) != held_copy:
                print(f"SNAPSHOT CHANGED case {case} step {step}")
                return 1
            compared += 1
            if fast.source != text or tuple(fast.lines) != tuple(ref_split(text)):
                print(f"MISMATCH case {case} step {step}: {change!r}\nref:  {text!r}\nfast: {fast.source!r}")
                return 1
            p = _random_position(rnd, ref_split(text))
            if ref_offset(text, p.line, p.character, enc) != fast.offset_at_position(p):
                print(
                    f"OFFSET MISMATCH case {case} step {step}: {p} -> {ref_offset(text, p.line, p.character, enc)}"
                    f" vs {fast.offset_at_position(p)} in {text!r}"
                )
                return 1
    print(f"documents: FastTextDocument matches the LSP reference on {compared} random edits")
    return 0


if __name__ == "__main__":
    raise SystemExit(check(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
