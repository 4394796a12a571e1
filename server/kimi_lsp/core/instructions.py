"""An instruction written in the code: `# kimi: rename total to acc` inside the selection.

Editors without our plugins have no prompt for a refactor instruction or a question; a comment line in the
selection, in the language's comment syntax, says it instead. The line is taken out of the code the model sees
(and so out of the edited code).
"""

from __future__ import annotations

import re
from typing import Optional

from kimi_lsp.core.comments import BLOCK_COMMENTS, LINE_COMMENTS

_ANY_LINE = ("#", "//", "--", ";")


def _pattern(language: str) -> re.Pattern[str]:
    lang = (language or "").lower()
    if lang in BLOCK_COMMENTS:
        open_, close = BLOCK_COMMENTS[lang]
        markers = [rf"{re.escape(open_)}(?P<b>.*?){re.escape(close.strip())}"]
    elif lang in LINE_COMMENTS:
        markers = [rf"{re.escape(LINE_COMMENTS[lang])}(?P<l>.*)"]
    else:  # unknown language: any common comment marker
        markers = [rf"(?:{'|'.join(map(re.escape, _ANY_LINE))})(?P<l>.*)", r"<!--(?P<b>.*?)-->", r"/\*(?P<c>.*?)\*/"]
    return re.compile(rf"^[ \t]*(?:{'|'.join(markers)})[ \t]*(?:\r\n|\r|\n)?$")


_KIMI = re.compile(r"^\s*kimi\s*:\s*(?P<text>.*?)\s*$", re.I)


def take_instruction(selection: str, language: str) -> Optional[tuple[str, str]]:
    """(instruction, the selection without its `kimi:` comment lines), or None when there is none."""
    if "kimi" not in selection.lower():
        return None
    rx = _pattern(language)
    found: list[str] = []
    kept: list[str] = []
    for line in re.split(r"(?<=\n)|(?<=\r)(?!\n)", selection):
        m = rx.match(line)
        body = next((g for g in (m.groupdict().values() if m else ()) if g is not None), None)
        k = _KIMI.match(body) if body is not None else None
        if k and k.group("text"):
            found.append(k.group("text"))
        else:
            kept.append(line)
    if not found:
        return None
    return " ".join(found), "".join(kept)
