"""Table-driven unit tests for the pure parts: settings, stream reading, error mapping, edits, models (prompts: test_prompts.py)."""

from __future__ import annotations

import json

import pytest
from lsprotocol import types as lsp

from kimi_lsp import errors
from kimi_lsp.core.edits import fit_to_selection, minimal_edits, strip_fences
from kimi_lsp.kimi.http import is_loopback
from kimi_lsp.kimi.models import BUILTIN_MODELS, from_live, larger_windows, resolve
from kimi_lsp.kimi.sse import ChunkReader, ThinkSplitter
from kimi_lsp.settings import DEFAULTS, CustomModel, Settings, merge_settings

# -- settings ---------------------------------------------------------------------------------------------

SETTINGS_CASES = [
    # raw, expected (alias -> value), problem keys
    ({}, {"model": "kimi-k2.5", "region": "international", "contextLines": 20}, []),
    ({"model": "moonshot-v1-8k", "region": "china"}, {"model": "moonshot-v1-8k", "region": "china"}, []),
    ({"region": "mars"}, {"region": "international"}, ["region"]),
    ({"maxTokens": -1, "temperature": 0.2}, {"maxTokens": None, "temperature": 0.2}, ["maxTokens"]),
    ({"maxTokens": "lots"}, {"maxTokens": None}, ["maxTokens"]),
    ({"temperature": 9}, {"temperature": None}, ["temperature"]),
    ({"requestTimeout": 0}, {"requestTimeout": 120.0}, ["requestTimeout"]),
    ({"contextLines": 10**9}, {"contextLines": 20}, ["contextLines"]),
    ({"baseUrl": "ftp://x"}, {"baseUrl": None}, ["baseUrl"]),
    ({"baseUrl": ""}, {"baseUrl": None}, []),
    ({"baseUrl": "http://127.0.0.1:9/v1/"}, {"baseUrl": "http://127.0.0.1:9/v1"}, []),
    ({"proxy": "socks5://127.0.0.1:1080"}, {"proxy": "socks5://127.0.0.1:1080"}, []),
    ({"proxy": "gopher://x"}, {"proxy": None}, ["proxy"]),
    ({"unknownKey": 1, "server": {"path": "x"}}, {"model": "kimi-k2.5"}, []),
    ({"customModels": [{"id": "x", "contextLength": "big"}]}, {"customModels": []}, ["customModels"]),
    ({"actions": [{"id": "a b", "title": "t", "prompt": "p"}]}, {"actions": []}, ["actions"]),
    (
        {"actions": [{"id": "ab", "title": "t", "prompt": "p", "output": "insertAfter"}]},
        {"actions": [{"id": "ab", "title": "t", "prompt": "p", "output": "insertAfter"}]},
        [],
    ),
    ({"previewEdits": "sometimes"}, {"previewEdits": "auto"}, ["previewEdits"]),
    ({"inline": {"hover": False}}, {"inline": {"hover": False, "codeLens": True}}, []),
    ({"model": ""}, {"model": "kimi-k2.5"}, ["model"]),
]


@pytest.mark.parametrize("raw,expected,bad", SETTINGS_CASES)
def test_merge_settings(raw, expected, bad):
    settings, problems = merge_settings(raw, DEFAULTS)
    dumped = settings.model_dump(by_alias=True, mode="json")
    for key, value in expected.items():
        assert dumped[key] == value
    assert sorted(p.split(":")[0].split(".")[1] for p in problems) == sorted(bad)
    assert all("keeping" in p for p in problems)


def test_bad_key_keeps_previous_not_default():
    previous, _ = merge_settings({"model": "moonshot-v1-8k", "region": "china"})
    settings, problems = merge_settings({"model": "moonshot-v1-8k", "region": 7}, previous)
    assert settings.region == "china" and problems
    same, problems = merge_settings("not an object", previous)
    assert same is previous and problems


def test_effective_base_url():
    assert Settings().effective_base_url == "https://api.moonshot.ai/v1"
    assert Settings(region="china").effective_base_url == "https://api.moonshot.cn/v1"
    assert Settings(region="china", base_url="http://localhost:1/v1").effective_base_url == "http://localhost:1/v1"


# -- stream reading ------------------------------------------------------------------------------------------


def chunk(delta=None, finish=None, usage=None, top_usage=None, choices=True):
    c = {"id": "c", "object": "chat.completion.chunk", "model": "kimi-k2.5"}
    if choices:
        ch = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        if usage:
            ch["usage"] = usage
        c["choices"] = [ch]
    else:
        c["choices"] = []
    if top_usage is not None:
        c["usage"] = top_usage
    return c


U = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
STREAM_CASES = [
    (
        "usage in choice",
        [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk(finish="stop", usage=U)],
        "Hi",
        "",
        U,
    ),
    (
        "usage in final chunk",
        [chunk({"content": "Hi"}, top_usage=None), chunk(finish="stop"), chunk(choices=False, top_usage=U)],
        "Hi",
        "",
        U,
    ),
    (
        "reasoning first",
        [
            chunk({"reasoning_content": "hmm "}),
            chunk({"reasoning_content": "ok"}),
            chunk({"content": "A"}),
            chunk(finish="stop"),
        ],
        "A",
        "hmm ok",
        None,
    ),
    (
        "think tags split",
        [
            chunk({"content": "<thi"}),
            chunk({"content": "nk>secret</th"}),
            chunk({"content": "ink>code"}),
            chunk(finish="stop"),
        ],
        "code",
        "secret",
        None,
    ),
    (
        "lone angle bracket",
        [chunk({"content": "a < b"}), chunk({"content": " <t"}), chunk(finish="stop")],
        "a < b <t",
        "",
        None,
    ),
]


@pytest.mark.parametrize("name,chunks,content,reasoning,usage", STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
def test_chunk_reader(name, chunks, content, reasoning, usage):
    seen = []
    reader = ChunkReader(lambda kind, text: seen.append(kind))
    for c in chunks:
        reader.feed(c)
    reply = reader.finish()
    assert (reply.content, reply.reasoning, reply.usage) == (content, reasoning, usage)
    if reasoning:
        assert seen.index("content") > max(i for i, k in enumerate(seen) if k == "reasoning")


def test_tool_call_fragments_join():
    reader = ChunkReader(lambda *_: None)
    reader.feed(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "read_file:0",
                        "type": "function",
                        "function": {"name": "read_file", "arguments": '{"pa'},
                    }
                ]
            }
        )
    )
    reader.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a"}'}}]}, finish="tool_calls"))
    reply = reader.finish()
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls[0].to_message() == {
        "id": "read_file:0",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }


@pytest.mark.parametrize(
    "pieces,expected",
    [
        (["<think>a</think>b"], [("reasoning", "a"), ("content", "b")]),
        (["x<", "think>y</think", ">z"], [("content", "x"), ("reasoning", "y"), ("content", "z")]),
        (["<think>unterminated"], [("reasoning", "unterminated")]),
        (["plain"], [("content", "plain")]),
    ],
)
def test_think_splitter(pieces, expected):
    s = ThinkSplitter()
    out = [p for piece in pieces for p in s.feed(piece)] + s.flush()
    merged: list = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    assert merged == expected


# -- error mapping -----------------------------------------------------------------------------------------


def body(etype, msg):
    return json.dumps({"error": {"type": etype, "message": msg}})


ERROR_CASES = [
    (401, body("invalid_authentication_error", "Invalid Authentication"), errors.Unauthorized, "not interchangeable"),
    (401, body("incorrect_api_key_error", "Incorrect API key provided"), errors.Unauthorized, "rejected"),
    (
        404,
        body("resource_not_found_error", "Not found the model kimi-k2.6 or Permission denied"),
        errors.ModelNotFound,
        "kimi-k2.6",
    ),
    (
        404,
        json.dumps({"code": 5, "error": "url.not_found", "message": "x", "scode": "0x5", "status": False}),
        errors.BadRequest,
        "kimi.baseUrl",
    ),
    (
        400,
        body(
            "invalid_request_error",
            "Invalid request: Your request exceeded model token limit: 262144 (requested: 265359)",
        ),
        errors.ContextTooLong,
        "265359",
    ),
    (
        400,
        body("invalid_request_error", "invalid temperature: only 1 is allowed for this model"),
        errors.BadRequest,
        "only 1",
    ),
    (
        400,
        body("content_filter", "The request was rejected because it was considered high risk"),
        errors.ContentFiltered,
        "high risk",
    ),
    (
        403,
        body("permission_denied_error", "The API you are accessing is not open"),
        errors.PermissionDenied,
        "not open",
    ),
    (
        429,
        body(
            "rate_limit_reached_error",
            "Your account org-1<ak-2> request reached organization max RPM: 3, please try again after 7 seconds",
        ),
        errors.RateLimited,
        "7 s",
    ),
    (429, body("engine_overloaded_error", "The engine is currently overloaded"), errors.Overloaded, "overloaded"),
    (
        429,
        body("exceeded_current_quota_error", "You exceeded your current token quota"),
        errors.QuotaExceeded,
        "balance",
    ),
    (
        403,
        body("exceeded_current_quota_error", "Your account org-1<ak-2> is suspended"),
        errors.QuotaExceeded,
        "suspended",
    ),
    (500, body("server_error", ""), errors.ServerError, "server error"),
    (502, "upstream connect error", errors.ServerError, "upstream"),
]


@pytest.mark.parametrize("status,text,cls,words", ERROR_CASES)
def test_error_mapping(status, text, cls, words):
    exc = errors.from_response(
        status, text, base_url="https://api.moonshot.ai/v1", model="kimi-k2.6", request_id="req-1"
    )
    assert type(exc) is cls and words in str(exc) and "req-1" in str(exc)
    assert exc.retryable == (cls in (errors.RateLimited, errors.Overloaded, errors.ServerError))


def test_rate_limit_wait():
    exc = errors.from_response(
        429, body("rate_limit_reached_error", "please try again after 3 seconds"), base_url="u", model="m"
    )
    assert exc.wait == 3
    assert (
        errors.from_response(429, body("rate_limit_reached_error", "x"), base_url="u", model="m", retry_after="2").wait
        == 2
    )
    assert errors.from_response(429, body("rate_limit_reached_error", "x"), base_url="u", model="m").wait is None


@pytest.mark.parametrize(
    "url,ok",
    [
        ("http://127.0.0.1:1/v1", True),
        ("http://localhost/v1", True),
        ("http://[::1]:8/v1", True),
        ("http://example.com/v1", False),
        ("http://10.0.0.1/v1", False),
    ],
)
def test_loopback(url, ok):
    assert is_loopback(url) is ok


# -- models ------------------------------------------------------------------------------------------------


def test_resolve_order():
    custom = [CustomModel(id="kimi-k2.5", context_length=1000, vision=False, thinking=True)]
    assert resolve("kimi-k2.5", custom).context_length == 1000
    assert resolve("kimi-k2.5").vision is True
    unknown = resolve("kimi-k9")
    assert unknown.known is False and unknown.vision is False
    live = {"x": from_live({"id": "x", "context_length": 5, "supports_image_in": True})}
    assert resolve("x", (), live).vision is True
    assert from_live({"id": "kimi-k2.5"}).context_length == 262144  # missing fields fall back to the table


def test_larger_windows_prefers_family():
    cands = list(BUILTIN_MODELS.values())
    assert larger_windows("moonshot-v1-8k", 20000, cands)[:2] == ["moonshot-v1-32k", "moonshot-v1-128k"]
    assert larger_windows("kimi-k2.5", 10**7, cands) == []


# -- edits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,code",
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("Here:\n```\nx = 1\ny\n```\nDone.", "x = 1\ny\n"),
        ("x = 1\n", "x = 1\n"),
        ("```python\nx = 1", "x = 1"),
        ("````md\n```inner```\n````", "```inner```\n"),
    ],
)
def test_strip_fences(reply, code):
    assert strip_fences(reply) == code


@pytest.mark.parametrize("orig,new,out", [("a\n", "b", "b\n"), ("a", "b\n", "b"), ("a\n", "b\n", "b\n")])
def test_fit_to_selection(orig, new, out):
    assert fit_to_selection(orig, new) == out


def P(line, ch):
    return lsp.Position(line=line, character=ch)


def test_minimal_edits_touch_only_changed_lines():
    orig = "a\nb\nc\nd\n"
    edits = minimal_edits(orig, "a\nB\nc\nd\ne\n", 100)
    assert [tuple(e) for e in edits] == [(102, 104, "B\n"), (108, 108, "e\n")]
    assert minimal_edits(orig, orig, 100) == []


def test_minimal_edits_mid_line_start():
    edits = minimal_edits("x = 1\ny\n", "x = 2\ny\n", 7)
    assert [tuple(e) for e in edits] == [(7, 13, "x = 2\n")]


def test_every_command_is_registered_and_implemented():
    from kimi_lsp.lsp.app import COMMANDS, handlers

    assert sorted(COMMANDS) == sorted(handlers())


def test_start_up_path_stays_light():
    """`initialize` is answered before the HTTP and validation stacks load (docs/benchmarks.md, B1)."""
    import subprocess
    import sys

    heavy = (
        "httpx",
        "pydantic",
        "kimi_lsp.lsp.features.actions",
        "kimi_lsp.lsp.features.account",
        "kimi_lsp.lsp.args",
        "kimi_lsp.kimi.http",
        "markdown_it",
        "re2",
    )
    code = (
        "import sys; from kimi_lsp.lsp.app import create_server; create_server(); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "[]"


QUICK_FIX_ROWS = [
    # (code, data, client prompts, expected titles)
    (
        "unauthorized",
        {"region": "international", "regionDecides": True},
        False,
        ["Kimi: How to set the API key", "Kimi: Switch region to china"],
    ),
    (
        "unauthorized",
        {"region": "china", "regionDecides": True},
        True,
        ["Kimi: Set API key…", "Kimi: Switch region to international"],
    ),
    ("unauthorized", {"region": "international", "regionDecides": False}, False, ["Kimi: How to set the API key"]),
    ("no-api-key", {"region": "international", "regionDecides": True}, False, ["Kimi: How to set the API key"]),
    (
        "model-not-found",
        {"models": ["kimi-k2.5", "moonshot-v1-8k"]},
        False,
        ["Kimi: Use model kimi-k2.5", "Kimi: Use model moonshot-v1-8k"],
    ),
    ("rate-limited", {}, False, []),
]


@pytest.mark.parametrize("code,data,prompts,titles", QUICK_FIX_ROWS)
def test_quick_fixes_table(code, data, prompts, titles):
    from lsprotocol import types as lsp

    from kimi_lsp.lsp.features.diagnostics import quick_fixes

    rng = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=1, character=0))
    diag = lsp.Diagnostic(range=rng, message="m", source="kimi", code=code, data=data)
    assert [f.title for f in quick_fixes(diag, prompts)] == titles


INSTRUCTION_ROWS = [
    # (language, selection, expected instruction, expected code)
    ("python", "# kimi: rename total to acc\ntotal = 1\n", "rename total to acc", "total = 1\n"),
    ("python", "total = 1\n    #  KIMI:  use a dict  \nx = 2\n", "use a dict", "total = 1\nx = 2\n"),
    ("javascript", "// kimi: make it async\nfoo();\n", "make it async", "foo();\n"),
    ("lua", "-- kimi: why a loop?\nfor i=1,2 do end\n", "why a loop?", "for i=1,2 do end\n"),
    ("html", "<!-- kimi: add alt text -->\n<img src=a.png>\n", "add alt text", "<img src=a.png>\n"),
    ("css", "/* kimi: use grid */\na { }\n", "use grid", "a { }\n"),
    ("plaintext", "; kimi: shorter\nx\n", "shorter", "x\n"),
    ("python", "x = 1  # kimi: not a whole line\n", None, None),
    ("python", "print('kimi: in a string')\n", None, None),
    ("python", "# kimi:\nx\n", None, None),
    ("python", "# kimi: a\r\nx\r\n# kimi: b\r\n", "a b", "x\r\n"),
]


@pytest.mark.parametrize("language,selection,instruction,code", INSTRUCTION_ROWS)
def test_instruction_from_a_comment(language, selection, instruction, code):
    from kimi_lsp.core.instructions import take_instruction

    got = take_instruction(selection, language)
    assert got == (None if instruction is None else (instruction, code))
