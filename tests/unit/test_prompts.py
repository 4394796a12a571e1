"""Prompts (core/prompts.py, core/pipeline.py's build_prompt and fit_prompt): the layout for Moonshot's prefix
cache and the conventions the fake relies on (a `Task:` line, the code to work on in the last fenced block, an
`Instruction:` line, "Reply with ONLY the code" for code tasks)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any, Optional

import pytest

from kimi_lsp import errors
from kimi_lsp.core.actions import BUILTIN_ACTIONS, ActionSpec, custom_action
from kimi_lsp.core.pipeline import Job, build_prompt, context_around, fit_prompt
from kimi_lsp.core.prompts import (
    SYSTEM,
    PromptInput,
    build_messages,
    estimate_tokens,
    fence,
    file_part,
    fits_whole,
    selection_lines,
)
from kimi_lsp.kimi.models import BUILTIN_MODELS, ModelInfo
from kimi_lsp.settings import CustomAction, Settings

DOC = "".join(
    ["import os\n", "\n"]
    + [f"def f{i}(a, b):\n    return a * {i} + b  # BUG\n\n" for i in range(30)]
    + ["def main():\n", "    # kimi: rename total to acc\n", "    total = f1(1, 2)\n", "    return total\n"]
)
LINES = DOC.splitlines(keepends=True)
CODE_TASKS = {"refactor", "fix", "document", "custom-code"}
FENCE = re.compile(r"^(`{3,})[^\n]*\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def action(name: str) -> ActionSpec:
    if name == "custom-code":
        return custom_action(
            CustomAction(id="shout", title="Shout", prompt="Uppercase this {language}.", output="replace")
        )
    if name == "custom-show":
        return custom_action(CustomAction(id="summary", title="Summary", prompt="Summarise {language} code in {file}:"))
    if name == "custom-inline":
        return custom_action(CustomAction(id="inline", title="Inline", prompt="Look at {selection} and say why."))
    return BUILTIN_ACTIONS[name]


def span(first: int, last: int) -> tuple[int, int]:
    """Offsets of 0-based lines first..last (inclusive)."""
    start = sum(map(len, LINES[:first]))
    return start, start + sum(map(len, LINES[first : last + 1]))


def job(
    name: str,
    first: int = 2,
    last: int = 3,
    text: str = DOC,
    settings: Optional[Settings] = None,
    model: Optional[ModelInfo] = None,
    **extra: Any,
) -> Job:
    start, end = span(first, last) if text is DOC else (0, len(text))
    return Job(
        action=action(name),
        text=text,
        start=start,
        end=end,
        settings=settings or Settings(),
        model=model or BUILTIN_MODELS["kimi-k2.5"],
        request_id="r",
        language="python",
        path="pkg/mod.py",
        **extra,
    )


def user_of(messages: list[dict[str, Any]]) -> str:
    content = messages[1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def common_prefix(a: str, b: str) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n]


def last_block(text: str) -> str:
    blocks = FENCE.findall(text)
    assert blocks, text
    return blocks[-1][1]


# -- the layout ----------------------------------------------------------------------------------------------

TASKS = ["explain", "refactor", "fix", "document", "ask", "custom-code", "custom-show", "custom-inline"]


@pytest.mark.parametrize("name", TASKS + ["explain-comment", "describe-image", "alt-text", "mockup"])
def test_one_system_prompt_for_every_action(name):
    messages = build_prompt(job(name), 20)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM
    assert "Task:" not in SYSTEM and "task:" not in SYSTEM.lower() and "ONLY the code" not in SYSTEM


# Two consecutive actions on the same file, any tasks and selections: the user messages share the whole file
# part, so Moonshot bills it at the cache price the second time.
PAIRS = [
    (a, b, sel_a, sel_b)
    for a in TASKS
    for b in TASKS
    for sel_a, sel_b in ([(2, 3), (50, 60)] if a != b else [(2, 3), (2, 3)], [(91, 94), (0, 0)])
]


@pytest.mark.parametrize("a,b,sel_a,sel_b", PAIRS)
def test_consecutive_actions_share_the_file_part(a, b, sel_a, sel_b):
    first = job(a, *sel_a, instruction="rename a to x" if a != "ask" else "why?", diagnostics=["line 3: BUG"])
    second = job(b, *sel_b)
    ua, ub = user_of(build_prompt(first, 20)), user_of(build_prompt(second, 20))
    part = file_part(PromptInput(task="", selection="", language="python", file="pkg/mod.py", document=DOC))
    assert part == "File: pkg/mod.py (python)\n" + fence(DOC, "python")
    common = common_prefix(ua, ub)
    assert common.startswith(part + "\n\nTask: "), (len(common), len(part))
    for user, name in ((ua, a), (ub, b)):
        assert user.startswith(part)
        task_id = action(name).id
        assert re.search(rf"^Task: {re.escape(task_id)}$", user, re.MULTILINE)
        assert ("Reply with ONLY the code" in user) == (name in CODE_TASKS)


def test_task_part_order_and_the_selection_last():
    j = job("fix", 2, 3, diagnostics=["line 3: BUG"], instruction="keep it short")
    user = user_of(build_prompt(j, 20))
    task = user[user.index("\n\nTask: fix") :]
    order = ["Task: fix", "ONLY the code", "Diagnostics in the selection:\n- line 3: BUG", "Selected code (lines 3–4"]
    assert [task.index(x) for x in order] == sorted(task.index(x) for x in order)
    assert task.rstrip().endswith("Instruction: keep it short")
    assert last_block(user) == "def f0(a, b):\n    return a * 0 + b  # BUG\n"
    assert "Selected code (lines 3–4 of the file above):\n```python\ndef f0" in user


def test_ask_question_and_images_after_the_file():
    @dataclasses.dataclass
    class Img:
        path: str

        def part(self) -> dict[str, Any]:
            return {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}

    j = job("ask", 2, 3, instruction="what is b?", images=[Img("shot.png")])
    messages = build_prompt(j, 20)
    content = messages[1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url"]
    user = content[0]["text"]
    assert user.index("```python\nimport os") < user.index("Task: ask") < user.index("Question: what is b?")
    assert user.index("Question:") < user.index("Attached images: shot.png") < user.index("Selected code (lines")
    assert "Instruction:" not in user


def test_custom_actions_keep_the_file_first():
    show = user_of(build_prompt(job("custom-show"), 20))
    assert show.index("```python\nimport os") < show.index("Task: summary\nAnswer in Markdown.")
    assert "Summarise python code in pkg/mod.py:\n\nSelected code (lines 3–4 of the file above):" in show
    assert last_block(show).startswith("def f0(a, b):")
    code = user_of(build_prompt(job("custom-code"), 20))
    assert "Task: shout\nReply with ONLY the code" in code and "Uppercase this python." in code
    inline = user_of(build_prompt(job("custom-inline"), 20))
    assert "Look at ```python\ndef f0(a, b):" in inline and "Selected code" not in inline


def test_the_instruction_comment_stays_in_the_file_and_leaves_the_selection():
    first, last = len(LINES) - 4, len(LINES) - 1
    j = job("refactor", first, last, instruction="rename total to acc")
    j.prompt_selection = "".join(LINES[first : last + 1]).replace("    # kimi: rename total to acc\n", "")
    user = user_of(build_prompt(j, 20))
    assert user.index("# kimi: rename total to acc") < user.index("Task: refactor")  # the document as it is
    assert "kimi:" not in last_block(user)
    assert last_block(user) == "def main():\n    total = f1(1, 2)\n    return total\n"
    assert f"(lines {first + 1}–{last + 1} of the file above)" in user
    assert user.rstrip().endswith("Instruction: rename total to acc")


def test_fences_are_lengthened_around_backticks():
    text = 'DOC = """\n```py\nx = 1\n```\n"""\n'
    user = user_of(build_prompt(job("refactor", text=text), 20))
    # (the selection is the whole file here: sent once, as the selection)
    assert "File: pkg/mod.py (python)" in user and user.count("````python\n") == 1
    assert last_block(user) == text
    assert fence("a ``` b").startswith("````")


@pytest.mark.parametrize(
    "limit,text,whole",
    [
        (8000, DOC, True),
        (0, DOC, False),  # 0: only kimi.contextLines
        (10, DOC, False),  # larger than the limit
        (8000, "  \n\n", False),  # nothing to send
        (100, "x" * 299, True),
        (100, "x" * 302, False),
        (100, "中" * 101, False),  # wide characters count a token each
    ],
)
def test_when_the_whole_file_goes(limit, text, whole):
    assert fits_whole(text, limit) is whole


def test_a_large_file_gets_the_window():
    big = "".join(f"value_{i} = {i}\n" for i in range(3000))
    settings = Settings(file_context_tokens=1000, context_lines=2)
    j = dataclasses.replace(job("explain", settings=settings), text=big, start=big.index("value_1500 ="))
    j.end = big.index("value_1501 =")
    user = user_of(build_prompt(j, 2))
    assert user.startswith("File: pkg/mod.py (python)\n\nContext above the selection (do not repeat it):\n")
    assert "value_1498 = " in user and "value_1497 = " not in user and "value_1502 = " in user
    assert "Selected code:\n```python\nvalue_1500 = 1500\n```" in user
    assert user.index("Context below") < user.index("Task: explain")


@pytest.mark.parametrize(
    "start,end,lines",
    [(0, 0, (1, 1)), (0, 3, (1, 1)), (0, 4, (1, 2)), (3, 6, (2, 2)), (4, 7, (2, 3)), (3, 12, (2, 4))],
)
def test_selection_lines(start, end, lines):
    assert selection_lines("ab\nc\r\nd\re\n", start, end) == lines


# -- fitting -------------------------------------------------------------------------------------------------


class Estimator:
    def __init__(self) -> None:
        self.calls = 0

    async def estimate_tokens(self, model: str, messages: list[dict[str, Any]]) -> int:
        self.calls += 1
        return estimate_tokens(messages)


def test_fit_sends_the_whole_file_when_it_fits():
    messages = asyncio.run(fit_prompt(job("explain"), None, BUILTIN_MODELS.values()))
    assert fence(DOC, "python") in user_of(messages)


def test_fit_falls_back_to_the_window_then_halves_it():
    doc = "".join(f"value_{i} = {i}  # a line of some length to fill the window\n" for i in range(400))
    small = ModelInfo("tiny", 4000)  # reserve min(8192, max(1024, 1000)) = 1024: budget 2976
    settings = Settings(context_lines=200, max_tokens=1024)
    assert fits_whole(doc, settings.file_context_tokens)
    j = dataclasses.replace(job("explain", settings=settings, model=small), text=doc)
    j.start, j.end = doc.index("value_200 ="), doc.index("value_201 =")
    user = user_of(asyncio.run(fit_prompt(j, Estimator(), [small])))
    assert "Context above the selection" in user and "value_0 = " not in user  # not the whole file
    assert "value_199 = " in user and "Selected code:\n```python\nvalue_200 = 200" in user


def test_fit_never_trims_the_selection():
    doc = "x = 1\n" * 5000
    small = ModelInfo("tiny", 4000)
    j = dataclasses.replace(job("explain", settings=Settings(max_tokens=1024), model=small), text=doc, end=len(doc))
    with pytest.raises(errors.Refused, match="too large for tiny"):
        asyncio.run(fit_prompt(j, Estimator(), [small]))


# -- templates and the estimate (moved from test_units.py) ---------------------------------------------------


def test_custom_template_placeholders_only():
    msgs = build_messages(
        PromptInput(
            task="x",
            selection="s",
            language="go",
            file="f.go",
            template="{language} {file} {unknown} {selection}",
            code_output=True,
        )
    )
    user = msgs[1]["content"]
    assert user.startswith("File: f.go (go)\n\nTask: x\nReply with ONLY the code")
    assert user.endswith("\n\ngo f.go {unknown} ```go\ns\n```")


def test_estimate_is_generous():
    assert estimate_tokens([{"role": "user", "content": "x" * 300}]) >= 100
    assert estimate_tokens([{"role": "user", "content": "中" * 100}]) >= 100


def test_context_around():
    text = "".join(f"l{i}\n" for i in range(10))
    start = text.index("l5")
    end = text.index("l6")
    assert context_around(text, start, end, 2) == ("l3\nl4\n", "l6\nl7\n")
    assert context_around(text, start, end, 0) == ("", "")


def test_a_whole_file_selection_is_sent_once():
    from kimi_lsp.core.actions import BUILTIN_ACTIONS
    from kimi_lsp.core.pipeline import Job, build_prompt
    from kimi_lsp.kimi.models import BUILTIN_MODELS
    from kimi_lsp.settings import DEFAULTS

    text = "def f(x):\n    return x\n"
    job = Job(BUILTIN_ACTIONS["refactor"], text, 0, len(text), DEFAULTS, BUILTIN_MODELS["kimi-k2.5"], "r")
    user = build_prompt(job, 20)[-1]["content"]
    assert user.count("def f(x):") == 1 and user.rstrip().endswith("```")
