"""Images in chat requests: decoded, checked against the model, and described from their bytes."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kimi_lsp.fake.faults import _ApiError, _invalid
from kimi_lsp.fake.prompt import _FENCE, _HASH_COMMENT_LANGS, _labelled_line

# ------------------------------------------------------------------------------------------------- vision

IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)
_HTML_LIKE_LANGS = {"html", "htm", "markdown", "md", "xml", "svg", "vue", "svelte"}
_MOCKUP_HASH_LANGS = (_HASH_COMMENT_LANGS - {""}) | {"yaml", "yml"}


@dataclass
class _Image:
    mime: str
    data: bytes

    def label(self, number: int) -> str:
        """`img1=image/png,1234B,sha=ab12cd34`: enough for a test to prove the right bytes arrived intact."""
        return f"img{number}={self.mime},{len(self.data)}B,sha={hashlib.sha256(self.data).hexdigest()[:8]}"


def _decode_image(url: Any) -> _Image:
    """The image of an `image_url.url`, or the 400 Moonshot answers for a URL it does not take."""
    if not isinstance(url, str) or not url:
        raise _invalid("Invalid request: image_url.url is required")
    if re.match(r"https?://", url, re.IGNORECASE):
        raise _invalid(
            "Invalid request: image_url only accepts base64 data URLs (data:image/png;base64,...) "
            "or ms:// file ids, not http(s) URLs"
        )
    if url.startswith("ms://"):
        raise _invalid(f"Invalid request: file {url.removeprefix('ms://')} not found")
    match = _DATA_URL.fullmatch(url)
    if match is None or match.group("params").lower().split(";")[-1] != "base64":
        raise _invalid("Invalid request: image_url must be a base64 data URL (data:<mime>;base64,<data>)")
    mime = match.group("mime").lower()
    if mime not in IMAGE_MIMES:
        raise _invalid(
            f"Invalid request: unsupported image type {mime or '(none)'!r}: only {', '.join(IMAGE_MIMES)} are supported"
        )
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Invalid request: the image data is not valid base64") from None
    if not data:
        raise _invalid("Invalid request: the image data is empty")
    return _Image(mime, data)


def _image_parts(messages: list[dict]) -> Iterable[tuple[int, dict]]:
    """(message position, image_url part) for every image part of the request, in order."""
    for index, message in enumerate(messages):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                yield index, part


def _check_images(model: str, entry: dict, messages: list[dict]) -> None:
    for _, part in _image_parts(messages):
        if not entry.get("supports_image_in"):
            raise _invalid(f"Invalid request: Model {model} does not support image input")
        image_url = part.get("image_url")
        _decode_image(image_url.get("url") if isinstance(image_url, dict) else None)


def _images(messages: list[dict]) -> list[_Image]:
    """The decodable images of a request (validation has refused the others already)."""
    images = []
    for _, part in _image_parts(messages):
        image_url = part.get("image_url")
        with contextlib.suppress(_ApiError):
            images.append(_decode_image(image_url.get("url") if isinstance(image_url, dict) else None))
    return images


def _vision_content(task: str, user: str, images: list[_Image]) -> str:
    """The reply to a request with images: it depends on their bytes, so tests see the right file arrived.

    alt-text: `Fake alt text for image/png (1234 bytes)` (the first image); describe-image: `**fake-kimi** sees
    N image(s): img1=..., img2=....` then a paragraph `The picture is deterministic.`; mockup: a fenced block in
    the language of a `Language:` line (else the last fence's), holding a comment `mockup for img1=...` and
    one placeholder line (`_mockup_code`); any other task: `**fake-kimi** answers about img1=..., img2=...`.
    `Language: plain text` (what kimi_lsp.prompts says for a document without a language) means none.
    """
    labels = ", ".join(image.label(n) for n, image in enumerate(images, 1))
    if task == "alt-text":
        return f"Fake alt text for {images[0].mime} ({len(images[0].data)} bytes)"
    if task == "describe-image":
        return f"**fake-kimi** sees {len(images)} image(s): {labels}.\n\nThe picture is deterministic."
    if task == "mockup":
        blocks = list(_FENCE.finditer(user))
        lang = _labelled_line("Language", user) or (blocks[-1].group("lang") if blocks else "")
        lang = "" if lang.lower() in ("plain text", "plaintext") else lang
        return f"```{lang}\n{_mockup_code(lang, f'mockup for {labels}')}\n```"
    return f"**fake-kimi** answers about {labels}"


def _mockup_code(lang: str, note: str) -> str:
    """A comment line with `note`, then `<div class="mockup"></div>` (html-like), `mockup = None` (python) or
    `/* mockup */` (anything else: a placeholder, not necessarily valid code in that language)."""
    key = lang.lower()
    if key in _HTML_LIKE_LANGS:
        return f'<!-- {note} -->\n<div class="mockup"></div>'
    if key in ("css", "scss", "less"):
        return f"/* {note} */\n/* mockup */"
    if key in _MOCKUP_HASH_LANGS:
        comment = f"# {note}"
    elif key in ("lua", "sql"):
        comment = f"-- {note}"
    else:
        comment = f"// {note}"
    return comment + ("\nmockup = None" if key in ("python", "py", "python3") else "\n/* mockup */")
