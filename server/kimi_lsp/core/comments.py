"""An explanation written into the code as a comment, in the language's own comment syntax."""

from __future__ import annotations

import textwrap

LINE_COMMENTS = {
    "python": "#",
    "shellscript": "#",
    "sh": "#",
    "bash": "#",
    "zsh": "#",
    "ruby": "#",
    "perl": "#",
    "r": "#",
    "yaml": "#",
    "toml": "#",
    "dockerfile": "#",
    "makefile": "#",
    "elixir": "#",
    "javascript": "//",
    "typescript": "//",
    "javascriptreact": "//",
    "typescriptreact": "//",
    "go": "//",
    "rust": "//",
    "c": "//",
    "cpp": "//",
    "java": "//",
    "csharp": "//",
    "kotlin": "//",
    "swift": "//",
    "scala": "//",
    "dart": "//",
    "php": "//",
    "zig": "//",
    "lua": "--",
    "sql": "--",
    "haskell": "--",
}
BLOCK_COMMENTS = {
    "html": ("<!--", "-->"),
    "xml": ("<!--", "-->"),
    "markdown": ("<!--", "-->"),
    "vue": ("<!--", "-->"),
    "svelte": ("<!--", "-->"),
    "css": ("/*", " */"),
    "scss": ("/*", " */"),
    "less": ("/*", " */"),
}


def as_comment(text: str, language: str, indent: str, width: int = 100) -> str:
    """The explanation wrapped to `width` columns as a comment block, each line starting with `indent`."""
    width = max(40, width)
    paragraphs = text.strip().replace("\r\n", "\n").split("\n\n")
    lang = (language or "").lower()
    if lang in BLOCK_COMMENTS:
        open_, close = BLOCK_COMMENTS[lang]
        inner = _wrap(paragraphs, width - len(indent) - 2)
        body = [f"{indent}  {line}".rstrip() if line else "" for line in inner]
        return "\n".join([f"{indent}{open_}", *body, f"{indent}{close.strip()}"]) + "\n"
    prefix = LINE_COMMENTS.get(lang, "")
    if not prefix:  # plain text: no comment syntax exists
        return "\n".join(f"{indent}{line}".rstrip() for line in _wrap(paragraphs, width - len(indent))) + "\n"
    lines = _wrap(paragraphs, width - len(indent) - len(prefix) - 1)
    return "\n".join(f"{indent}{prefix} {line}".rstrip() for line in lines) + "\n"


def _wrap(paragraphs: list[str], width: int) -> list[str]:
    out: list[str] = []
    for i, para in enumerate(paragraphs):
        if i:
            out.append("")
        for line in para.split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            bullet = (
                stripped[:2]
                if stripped[:2] in ("- ", "* ") or (stripped[:1].isdigit() and ". " in stripped[:4])
                else ""
            )
            out.extend(
                textwrap.wrap(
                    stripped,
                    width=max(20, width),
                    subsequent_indent="  " if bullet else "",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                or [""]
            )
    return out
