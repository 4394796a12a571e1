"""Images referenced from code (Markdown, HTML, CSS, quoted paths): finding them, loading them safely, and
writing alt text back. Finding and alt-text spans are pure; loading goes through the tools' sandbox."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}

_MD = re.compile(r"!\[(?P<alt>[^\]\n]*)\]\(\s*<?(?P<path>[^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_HTML = re.compile(r"<img\b[^>]*>", re.I)
_ATTR = r"\b{name}\s*=\s*(?P<q>[\"'])(?P<v>[^\"']*)(?P=q)"
_CSS = re.compile(r"url\(\s*(?P<q>[\"']?)(?P<path>[^\"')\s]+)(?P=q)\s*\)")
_QUOTED = re.compile(r"(?P<q>[\"'`])(?P<path>[^\"'`\s]+\.(?:png|jpe?g|webp|gif))(?P=q)", re.I)


@dataclass(frozen=True)
class ImageRef:
    path: str
    kind: str  # markdown | html | css | quoted
    start: int  # the whole reference, as offsets into the scanned text
    end: int
    alt_start: Optional[int] = None  # the alt text's value (for html without alt: where to insert one)
    alt_end: Optional[int] = None
    has_alt_attr: bool = True

    @property
    def mime(self) -> str:
        return MIME.get(Path(self.path.split("?")[0].split("#")[0]).suffix.lower(), "")


def _usable(path: str) -> bool:
    return (
        bool(path)
        and not re.match(r"^[a-z][a-z0-9+.-]*:", path, re.I)
        and Path(path.split("?")[0].split("#")[0]).suffix.lower() in MIME
    )


def find_image_refs(text: str) -> list[ImageRef]:
    refs: list[ImageRef] = []
    taken: list[tuple[int, int]] = []

    def add(ref: ImageRef) -> None:
        if _usable(ref.path) and not any(s <= ref.start < e for s, e in taken):
            refs.append(ref)
            taken.append((ref.start, ref.end))

    for m in _MD.finditer(text):
        add(ImageRef(m["path"], "markdown", m.start(), m.end(), m.start("alt"), m.end("alt")))
    for m in _HTML.finditer(text):
        tag = m.group(0)
        src = re.search(_ATTR.format(name="src"), tag, re.I)
        if not src:
            continue
        alt = re.search(_ATTR.format(name="alt"), tag, re.I)
        if alt:
            add(ImageRef(src["v"], "html", m.start(), m.end(), m.start() + alt.start("v"), m.start() + alt.end("v")))
        else:
            at = m.start() + len("<img")
            add(ImageRef(src["v"], "html", m.start(), m.end(), at, at, has_alt_attr=False))
    for m in _CSS.finditer(text):
        add(ImageRef(m["path"], "css", m.start(), m.end()))
    for m in _QUOTED.finditer(text):
        add(ImageRef(m["path"], "quoted", m.start(), m.end()))
    return sorted(refs, key=lambda r: r.start)


def alt_text_edit(ref: ImageRef, alt: str) -> tuple[int, int, str]:
    """(start, end, new text) that puts `alt` into the reference's alt text."""
    if ref.alt_start is None or ref.alt_end is None:
        raise ValueError(f"a {ref.kind} image reference has no alt text")
    at, to = ref.alt_start, ref.alt_end
    alt = re.sub(r"^(?:alt(?:\s*text)?\s*:\s*)", "", " ".join(alt.split()), flags=re.I)
    if len(alt) >= 2 and alt[0] == alt[-1] and alt[0] in "\"'`":
        alt = alt[1:-1].strip()
    if ref.kind == "markdown":
        return at, to, alt.replace("[", "\\[").replace("]", "\\]")
    escaped = alt.replace("&", "&amp;").replace('"', "&quot;")
    if not ref.has_alt_attr:
        return at, to, f' alt="{escaped}"'
    return at, to, escaped.replace("'", "&#39;")


@dataclass(frozen=True)
class Image:
    path: str  # as shown to the user
    mime: str
    data: bytes

    def part(self) -> dict[str, Any]:
        url = f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"
        return {"type": "image_url", "image_url": {"url": url}}


def image_ref(text: str, action: str) -> Optional[ImageRef]:
    """The first image reference in `text` that `action` can use (alt text needs Markdown or an HTML img)."""
    refs = find_image_refs(text)
    if action == "alt-text":
        refs = [r for r in refs if r.kind in ("markdown", "html")]
    return refs[0] if refs else None
