"""core.completion: the cursor's context, the prompt's order, cleaning a reply into ghost text, and the cache."""

from __future__ import annotations

import pytest

from kimi_lsp.core.completion import CompletionCache, Cursor, clean, cursor_at, messages

TEXT = "".join(f"line {i}\n" for i in range(100))


def at(before: str, after: str = "\n") -> Cursor:
    return Cursor("a.py", "python", before, after)


def test_cursor_context_is_budgeted_in_lines():
    offset = TEXT.index("line 50") + 4
    c = cursor_at(TEXT, offset, 10)
    assert c.before.startswith("line 40\n") and c.before.endswith("line")
    assert c.line_prefix == "line" and c.line_suffix == " 50"
    assert c.after.count("\n") == 5
    assert cursor_at("abc", 3, 10).before == "abc" and cursor_at("abc", 0, 10).after == "abc"


def test_prompt_order_keeps_what_repeats_first():
    c = Cursor("a.py", "python", "def f(x):\n    return ", "\n\nprint(f(1))\n", (("b.py", "import os"),))
    system, user, partial = messages(c)
    assert system["role"] == "system" and partial == {"role": "assistant", "content": "    return ", "partial": True}
    content = user["content"]
    assert content.index("b.py") < content.index("File: a.py") < content.index("print(f(1))") < content.index("def f")
    assert len(messages(at("x = 1\n"))) == 2  # at a line's start: no empty partial message


CLEAN = [
    # before, after, reply, ghost
    ("    return ", "\n", "x * 2", "x * 2"),
    ("    return ", "\n", "```python\nx * 2\n```", "x * 2"),
    ("    return ", "\n", "x * 2\n```\nmore talk", "x * 2"),
    ("    return ", "\n", "    return x * 2", "x * 2"),
    ("    ", "\n", "    pass", "pass"),
    ("print(", ")\n", "x)", "x"),
    ("if x:\n", "    y = 2\n    return y\n", "    y = 1\n    y = 2\n    return y", "    y = 1"),
    ("x = ", "\n", "  \n \n", ""),
    ("x = ", "\n", "1\r\n2", "1\n2"),
    ("x = ", "\n", "\n".join(str(i) for i in range(20)), "\n".join(str(i) for i in range(12))),
]


@pytest.mark.parametrize("before,after,reply,ghost", CLEAN)
def test_clean(before, after, reply, ghost):
    assert clean(reply, at(before, after), 12) == ghost


def test_cache_exact_and_typing_through():
    cache = CompletionCache()
    c = at("def f(x):\n    return ", "\n")
    assert cache.get(c) is None
    cache.put(c, "x * 2")
    assert cache.get(c) == "x * 2"
    assert cache.get(at("def f(x):\n    return x", "\n")) == " * 2"
    assert cache.get(at("def f(x):\n    return x *", "\n")) == " 2"
    assert cache.get(at("def f(x):\n    return y", "\n")) is None  # typed something else
    assert cache.get(at("def f(x):\n    return x", "\n)")) is None  # the text after the cursor changed
    assert cache.get(at("def f(x):\n    return x * 2", "\n")) is None  # typed it all: nothing left


def test_cache_is_bounded():
    cache = CompletionCache(size=2)
    for i in range(3):
        cache.put(at(f"v{i} = "), str(i))
    assert cache.get(at("v0 = ")) is None and cache.get(at("v2 = ")) == "2"
