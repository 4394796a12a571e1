"""core.context: later prompts on a file keep the version earlier ones sent (their cached prefix) and add the changes
since, until the changes grow large or the base is too old."""

from __future__ import annotations

import pytest

from kimi_lsp.core.context import BASE_TTL, ContextBases, changes_since

FILE = "".join(f"line {i}\n" for i in range(1, 301))


def edit(text: str, line: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = new
    return "".join(lines)


def test_a_diff_with_the_current_line_numbers():
    diff = changes_since(FILE, edit(FILE, 150, "changed\n"))
    assert diff is not None and diff.startswith("--- before\n+++ now\n@@ -149,3 +149,3 @@\n")
    assert "-line 150\n+changed\n" in diff
    assert changes_since(FILE, FILE) == ""


@pytest.mark.parametrize(
    "now,kept",
    [
        (edit(FILE, 10, "x\n"), True),  # a small edit: the base stays
        ("".join(f"other {i}\n" for i in range(300)), False),  # a rewrite: the diff would be longer than the file
        (FILE + "no final break", True),
        ("", False),
    ],
)
def test_large_changes_make_a_new_base(now, kept):
    bases = ContextBases()
    assert bases.pick("u", FILE, now=0) == (FILE, "")
    base, changes = bases.pick("u", now, now=1)
    assert (base == FILE and bool(changes)) == kept
    if not kept:
        assert (base, changes) == (now, "")


def test_the_base_follows_the_cache_lifetime():
    bases = ContextBases()
    bases.pick("u", FILE, now=0)
    later = edit(FILE, 5, "y\n")
    assert bases.pick("u", later, now=BASE_TTL - 1)[0] == FILE  # reused, and its lifetime renewed
    assert bases.pick("u", later, now=2 * BASE_TTL - 2)[0] == FILE
    assert bases.pick("u", later, now=4 * BASE_TTL) == (later, "")  # expired: the current text is the base


def test_documents_are_apart_and_bounded():
    bases = ContextBases(size=2)
    bases.pick("a", "A\n", now=0)
    bases.pick("b", "B\n", now=0)
    bases.pick("c", "C\n", now=0)
    assert bases.pick("a", "A2\n", now=1) == ("A2\n", "")  # "a" was dropped: a fresh base
    assert bases.pick("c", "C\nC2\n", now=1)[0] == "C\n"
