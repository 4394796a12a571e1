"""The fake Moonshot server, exercised over real sockets with the same httpx stack the client uses."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from kimi_lsp.fake import FAULT_KINDS, FakeMoonshot, Fault, estimate_tokens

KEY = "sk-fake-valid-key"
HELLO = [{"role": "user", "content": "hello"}]


def root(fake: FakeMoonshot) -> str:
    return fake.base_url.removesuffix("/v1")


def chat(model: str = "moonshot-v1-8k", messages: list[dict] | None = None, **fields: Any) -> dict:
    return {"model": model, "messages": messages or HELLO, **fields}


def sse_data(client: httpx.Client, body: dict) -> list[str]:
    """The `data:` payloads of a streamed chat reply, [DONE] included."""
    with connect_sse(client, "POST", "/chat/completions", json={**body, "stream": True}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"] == "text/event-stream"
        return [event.data for event in source.iter_sse()]


def events(data: list[str]) -> list[dict]:
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
    return [json.loads(d) for d in data[:-1]]


def joined(chunks: list[dict], name: str) -> str:
    return "".join(c["choices"][0]["delta"].get(name, "") for c in chunks if c["choices"])


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


# --------------------------------------------------------------------------------------- simple endpoints


def test_models_list_matches_the_reference(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert models["kimi-k2.5"] == {
        "id": "kimi-k2.5",
        "object": "model",
        "created": 1769472000,
        "owned_by": "moonshot",
        "context_length": 262144,
        "supports_image_in": True,
        "supports_video_in": True,
        "supports_reasoning": True,
    }
    capabilities = {
        model_id: (m["context_length"], m["supports_image_in"], m["supports_video_in"], m["supports_reasoning"])
        for model_id, m in models.items()
        if model_id.startswith("kimi-")
    }
    assert capabilities == {
        "kimi-k2.5": (262144, True, True, True),
        "kimi-k2.6": (262144, True, True, True),
        "kimi-k2.7-code": (262144, True, True, True),
        "kimi-k2.7-code-highspeed": (262144, True, True, True),
        "kimi-k3": (1048576, True, False, True),
    }
    assert [models[f"moonshot-v1-{n}"]["context_length"] for n in ("8k", "32k", "128k")] == [8192, 32768, 131072]
    assert models["moonshot-v1-32k-vision-preview"]["supports_image_in"] is True
    assert "moonshot-v1-auto" in models and len(models) == 12


def test_models_argument_replaces_the_list() -> None:
    custom = {"id": "kimi-k2.6", "object": "model", "context_length": 1000, "supports_reasoning": True}
    fake = FakeMoonshot(models=[custom]).start_in_thread()
    try:
        with httpx.Client(base_url=fake.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            assert c.get("/models").json()["data"] == [custom]
            assert c.post("/chat/completions", json=chat("kimi-k2.5")).status_code == 404
            reply = c.post("/chat/completions", json=chat("kimi-k2.6")).json()
            assert reply["choices"][0]["message"]["reasoning_content"]  # supports_reasoning: it thinks
    finally:
        fake.stop_thread()


def test_balance(client: httpx.Client, fake: FakeMoonshot) -> None:
    assert client.get("/users/me/balance").json() == {
        "code": 0,
        "data": {"available_balance": 49.58894, "voucher_balance": 46.58893, "cash_balance": 3.00001},
        "scode": "0x0",
        "status": True,
    }
    fake.configure(balance=0)
    assert client.get("/users/me/balance").json()["data"]["available_balance"] == 0


@pytest.mark.parametrize(
    "method,path", [("GET", "/v1/nope"), ("POST", "/chat/completions"), ("GET", "/v1/chat/completions")]
)
def test_unknown_paths_get_the_gateway_404(client: httpx.Client, fake: FakeMoonshot, method: str, path: str) -> None:
    response = client.request(method, root(fake) + path)
    assert response.status_code == 404
    assert response.json() == {
        "code": 5,
        "error": "url.not_found",
        "message": "没找到对象",
        "scode": "0x5",
        "status": False,
    }


def test_estimate_endpoint_and_function(client: httpx.Client) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [
        {"role": "system", "content": "abcdefgh"},  # 4 + 2
        {"role": "user", "content": [{"type": "text", "text": "abcde"}, image]},
    ]  # 4 + 2 + 1000
    assert estimate_tokens(messages) == 1012
    response = client.post("/tokenizers/estimate-token-count", json={"model": "kimi-k2.5", "messages": messages})
    assert response.json() == {"data": {"total_tokens": 1012}}
    missing = client.post("/tokenizers/estimate-token-count", json={"model": "kimi-k9", "messages": messages})
    assert error_of(missing) == (404, "resource_not_found_error", "Not found the model kimi-k9 or Permission denied")


# ----------------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "authorization,error_type,message",
    [
        (None, "incorrect_api_key_error", "Incorrect API key provided"),
        ("", "incorrect_api_key_error", "Incorrect API key provided"),
        ("Bearer", "incorrect_api_key_error", "Incorrect API key provided"),
        ("Basic c2stZmFrZQ==", "incorrect_api_key_error", "Incorrect API key provided"),
        ("Bearer sk-other-region", "invalid_authentication_error", "Invalid Authentication"),
    ],
)
@pytest.mark.parametrize(
    "method,path", [("GET", "/models"), ("POST", "/chat/completions"), ("GET", "/users/me/balance")]
)
def test_auth_on_every_endpoint(
    fake: FakeMoonshot, authorization: str | None, error_type: str, message: str, method: str, path: str
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.request(method, fake.base_url + path, headers=headers, json=chat())
    assert error_of(response) == (401, error_type, message)
    assert response.headers["msh-request-id"]


def test_auth_failure_does_not_consume_a_fault(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script("overloaded")
    assert httpx.post(fake.base_url + "/chat/completions", json=chat()).status_code == 401
    assert client.post("/chat/completions", json=chat()).status_code == 429
    assert client.post("/chat/completions", json=chat()).status_code == 200


# ------------------------------------------------------------------------------------------------ validation

THINKING_TOOL_REPLAY = [
    {"role": "user", "content": "read it"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "read_file:0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "read_file:0", "content": "text"},
]
FUNCTION_CHOICE = {"type": "function", "function": {"name": "read_file"}}


@pytest.mark.parametrize(
    "body,status,error_type,message",
    [
        (
            chat("kimi-k2-thinking"),
            404,
            "resource_not_found_error",
            "Not found the model kimi-k2-thinking or Permission denied",
        ),
        (
            chat(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": ""}]),
            400,
            "invalid_request_error",
            "Invalid request: the message at position 1 with role 'user' must not be empty",
        ),
        (
            chat("kimi-k2.5", temperature=0.7),
            400,
            "invalid_request_error",
            "invalid temperature: only 1 is allowed for this model",
        ),
        (
            chat("kimi-k2.5", temperature=1.0, thinking={"type": "disabled"}),
            400,
            "invalid_request_error",
            "invalid temperature: only 0.6 is allowed for this model",
        ),
        (
            chat("kimi-k2.5", top_p=0.9),
            400,
            "invalid_request_error",
            "invalid top_p: only 0.95 is allowed for this model",
        ),
        (chat("kimi-k2.5", n=2), 400, "invalid_request_error", "invalid n: only 1 is allowed for this model"),
        (
            chat("moonshot-v1-8k", thinking={"type": "enabled"}),
            400,
            "invalid_request_error",
            'thinking is not supported by model "moonshot-v1-8k"',
        ),
        (
            chat("kimi-k2.5", thinking={"type": "enabled", "keep": True}),
            400,
            "invalid_request_error",
            'thinking.keep is not supported by model "kimi-k2.5"',
        ),
        (
            chat("moonshot-v1-8k", temperature=1.5),
            400,
            "invalid_request_error",
            "invalid temperature: 1.5 is not in [0, 1]",
        ),
        (chat(tool_choice="required"), 400, "invalid_request_error", "tool_choice 'required' is not supported"),
        (chat(tool_choice=FUNCTION_CHOICE), 400, "invalid_request_error", "tool_choice 'specified' is not supported"),
        (
            chat("kimi-k2.7-code", tool_choice=FUNCTION_CHOICE),
            400,
            "invalid_request_error",
            "tool_choice 'specified' is incompatible with thinking enabled",
        ),
        (
            chat("kimi-k2.7-code", THINKING_TOOL_REPLAY),
            400,
            "invalid_request_error",
            "thinking is enabled but reasoning_content is missing in assistant tool call message at index 1",
        ),
        (
            chat("moonshot-v1-8k", max_tokens=8190),
            400,
            "invalid_request_error",  # "hello" is 6 tokens
            "Invalid request: Your request exceeded model token limit: 8192 (requested: 8196)",
        ),
    ],
)
def test_chat_validation(
    client: httpx.Client, fake: FakeMoonshot, body: dict, status: int, error_type: str, message: str
) -> None:
    assert error_of(client.post("/chat/completions", json=body)) == (status, error_type, message)
    assert fake.chat_requests()[-1].body == body


def test_malformed_json_body(client: httpx.Client) -> None:
    response = client.post("/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
    status, error_type, _ = error_of(response)
    assert (status, error_type) == (400, "invalid_request_error")


@pytest.mark.parametrize(
    "body",
    [
        chat("kimi-k2.5", temperature=1, top_p=0.95, n=1),
        chat("kimi-k2.5", temperature=0.6, thinking={"type": "disabled"}),
        chat("moonshot-v1-8k", temperature=0.3, tool_choice="auto", max_tokens=8186),
        chat(
            "kimi-k2.7-code",
            THINKING_TOOL_REPLAY[:1]
            + [{**THINKING_TOOL_REPLAY[1], "reasoning_content": "r"}]
            + THINKING_TOOL_REPLAY[2:],
        ),
    ],
)
def test_chat_accepts_valid_requests(client: httpx.Client, body: dict) -> None:
    assert client.post("/chat/completions", json=body).status_code == 200


# ---------------------------------------------------------------------------------------------- error faults

RPM = "Your account org-fake<ak-fake> request reached organization max RPM: 3"
QUOTA = "You exceeded your current token quota: <org-fake> 338950, please check your account balance"


@pytest.mark.parametrize(
    "fault,status,error_type,message",
    [
        (Fault("unauthorized"), 401, "invalid_authentication_error", "Invalid Authentication"),
        (Fault("bad_key"), 401, "incorrect_api_key_error", "Incorrect API key provided"),
        (
            Fault("model_not_found"),
            404,
            "resource_not_found_error",
            "Not found the model moonshot-v1-8k or Permission denied",
        ),
        (
            Fault("context_too_long"),
            400,
            "invalid_request_error",
            "Invalid request: Your request exceeded model token limit: 8192 (requested: 8193)",
        ),
        (Fault("temperature"), 400, "invalid_request_error", "invalid temperature: only 1 is allowed for this model"),
        (
            Fault("content_filter"),
            400,
            "content_filter",
            "The request was rejected because it was considered high risk",
        ),
        (Fault("permission_denied"), 403, "permission_denied_error", "The API you are accessing is not open"),
        (Fault("rate_limit"), 429, "rate_limit_reached_error", RPM + ", please try again after 1 seconds"),
        (Fault("rate_limit", wait=None), 429, "rate_limit_reached_error", RPM),
        (
            Fault("overloaded"),
            429,
            "engine_overloaded_error",
            "The engine is currently overloaded, please try again later",
        ),
        (Fault("quota"), 429, "exceeded_current_quota_error", QUOTA),
        (Fault("quota_403"), 403, "exceeded_current_quota_error", QUOTA),
        (
            Fault("suspended"),
            429,
            "exceeded_current_quota_error",
            "Your account org-fake<ak-fake> is suspended, please check your plan and billing details",
        ),
        (Fault("server_error"), 500, "server_error", "The server had an error while processing your request"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_faults(
    client: httpx.Client, fake: FakeMoonshot, fault: Fault, status: int, error_type: str, message: str, stream: bool
) -> None:
    fake.script(fault)
    response = client.post("/chat/completions", json=chat(stream=stream))
    assert error_of(response) == (status, error_type, message)
    assert response.headers["content-type"] == "application/json"
    assert client.post("/chat/completions", json=chat()).status_code == 200  # one request per fault


def test_error_body_faults(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script("no_error_body", "wrong_content_type")
    bare = client.post("/chat/completions", json=chat())
    assert (bare.status_code, bare.text) == (500, "upstream connect error")
    html = client.post("/chat/completions", json=chat(stream=True))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.startswith("<!DOCTYPE html>")


def test_fault_kinds_are_checked() -> None:
    with pytest.raises(ValueError):
        Fault("teapot")
    assert Fault.from_json({"kind": "cut", "afterChunks": 1}) == Fault("cut", after_chunks=1)
    assert "drip" in FAULT_KINDS and "huge" in FAULT_KINDS


# ---------------------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    "body,thinks",
    [
        (chat("kimi-k2.5"), True),
        (chat("kimi-k2.7-code"), True),
        (chat("kimi-k2.5", thinking={"type": "disabled"}), False),
        (chat("moonshot-v1-8k"), False),
    ],
)
def test_stream_framing_matches_the_non_streamed_reply(client: httpx.Client, body: dict, thinks: bool) -> None:
    chunks = events(sse_data(client, body))
    assert chunks[0]["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", body["model"])
    }
    assert all("usage" not in c for c in chunks)  # default placement: inside choices[0]

    kinds = [k for c in chunks[1:-1] for k in c["choices"][0]["delta"]]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning_content")  # all reasoning before any content
    assert ("reasoning_content" in kinds) == thinks
    assert all(0 < len(v) <= 6 for c in chunks[1:] for v in c["choices"][0]["delta"].values())  # chunk_chars

    final = chunks[-1]["choices"][0]
    assert final["delta"] == {} and final["finish_reason"] == "stop"
    reply = client.post("/chat/completions", json=body).json()
    message = reply["choices"][0]["message"]
    assert joined(chunks, "content") == message["content"] == "**fake-kimi** answers: hello"
    assert joined(chunks, "reasoning_content") == message.get("reasoning_content", "")
    completion = math.ceil(len(message["content"] + message.get("reasoning_content", "")) / 4)
    usage = {
        "prompt_tokens": 6,
        "completion_tokens": completion,
        "total_tokens": 6 + completion,
        "cached_tokens": 0,  # far below the cache's minimum block
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert final["usage"] == reply["usage"] == usage
    assert reply["object"] == "chat.completion" and reply["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "placement,include_usage,in_choice,top_level",
    [
        ("choice", False, True, False),
        ("final", False, False, True),
        ("both", False, True, True),
        ("choice", True, True, True),
    ],
)
def test_usage_placement(
    client: httpx.Client, fake: FakeMoonshot, placement: str, include_usage: bool, in_choice: bool, top_level: bool
) -> None:
    fake.configure(usage_placement=placement)
    body = chat(stream_options={"include_usage": True}) if include_usage else chat()
    chunks = events(sse_data(client, body))
    tail = chunks[-1]
    if top_level:
        assert tail["choices"] == [] and tail["usage"]["prompt_tokens"] == 6
        assert all(c["usage"] is None for c in chunks[:-1])
        chunks = chunks[:-1]
    else:
        assert all("usage" not in c for c in chunks)
    assert ("usage" in chunks[-1]["choices"][0]) == in_choice
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------------------------ deterministic replies

CODE = "Reply with ONLY the code that replaces the selected code.\nTask: "
PROSE = "Explain the selected code.\nTask: "


def fenced(code: str, lang: str = "python", instruction: str = "") -> str:
    user = f"File: a.py\n\nSelected code:\n```{lang}\n{code}\n```"
    return user + (f"\n\nInstruction: {instruction}" if instruction else "")


@pytest.mark.parametrize(
    "system,user,expected",
    [
        (
            CODE + "refactor",
            fenced("def foo():\n    return foo_bar(foo)", instruction="Rename foo to bar"),
            "```python\ndef bar():\n    return foo_bar(bar)\n```",
        ),
        (CODE + "my-action", fenced("x = 'a'", instruction="make it UPPERCASE"), "```python\nX = 'A'\n```"),
        (
            CODE + "document",
            fenced("    x = 1\n    y = 2"),
            "```python\n    # Documented by fake-kimi.\n    x = 1\n    y = 2\n```",
        ),
        (CODE + "document", fenced("local x = 1", "lua"), "```lua\n-- Documented by fake-kimi.\nlocal x = 1\n```"),
        (
            CODE + "document",
            fenced("\tlet x;", "typescript"),
            "```typescript\n\t// Documented by fake-kimi.\n\tlet x;\n```",
        ),
        (CODE + "fix", fenced("BUG(BUGS) # BUG"), "```python\nFIXED(BUGS) # FIXED\n```"),
        (CODE + "refactor", fenced("x  =  1   \n"), "```python\nx  =  1   \n\n# refactored by fake-kimi\n```"),
        (
            CODE + "refactor",  # the code is the LAST fence, even one lengthened around ``` inside the code
            "Context above:\n```js\nabove()\n```\n\nSelected code:\n````md\n```\ninner\n```\n````",
            "````md\n```\ninner\n```\n// refactored by fake-kimi\n````",
        ),
        (
            PROSE + "explain",
            fenced("def f():\n    pass"),
            "**fake-kimi** explains 2 lines of python code (model moonshot-v1-8k).\n\nThe first line is `def f():`.\n\n",
        ),
        (
            PROSE + "explain",
            fenced("  " + "y" * 70, lang="", instruction="be brief"),
            f"**fake-kimi** explains 1 lines of text code (model moonshot-v1-8k).\n\nThe first line is `{'y' * 60}`."
            "\n\nInstruction: be brief",
        ),
        (PROSE + "ask", "What is 2+2? " * 10, "**fake-kimi** answers: " + ("What is 2+2? " * 10)[:80]),
    ],
)
def test_deterministic_content(client: httpx.Client, system: str, user: str, expected: str) -> None:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    reply = client.post("/chat/completions", json=chat(messages=messages)).json()
    assert reply["choices"][0]["message"]["content"] == expected


# The one-system-prompt layout: the file, then the task with its rules, diagnostics, the selection, the instruction.
ONE_SYSTEM = "You are Kimi, an expert programmer inside the user's code editor. Do what the task asks."
FILE = "def foo():\n    return BUG\n\n\nx = foo()  # BUG\n"
CODE_RULES = "Reply with ONLY the code that replaces the selected code, in one fenced code block."


def one_system_layout(task: str, rules: str, selection: str, instruction: str = "", diagnostics: str = "") -> str:
    parts = [f"File: a.py (python)\n```python\n{FILE}```", f"Task: {task}\n{rules}"]
    if diagnostics:
        parts.append(f"Diagnostics in the selection:\n- {diagnostics}")
    parts.append(f"Selected code (line 5 of the file above):\n```python\n{selection}\n```")
    if instruction:
        parts.append(f"Instruction: {instruction}")
    return "\n\n".join(parts)


@pytest.mark.parametrize(
    "system,user,expected",
    [
        (
            ONE_SYSTEM,
            one_system_layout("fix", "Fix it. " + CODE_RULES, "x = foo()  # BUG", diagnostics="BUG is undefined"),
            "```python\nx = foo()  # FIXED\n```",  # the file's other BUG stays out of the reply
        ),
        (
            ONE_SYSTEM,
            one_system_layout("refactor", CODE_RULES, "x = foo()  # BUG", instruction="Rename foo to bar"),
            "```python\nx = bar()  # BUG\n```",
        ),
        (
            ONE_SYSTEM,
            one_system_layout("document", "Document it. " + CODE_RULES, "x = foo()"),
            "```python\n# Documented by fake-kimi.\nx = foo()\n```",
        ),
        (
            "Explain the selected code.\nTask: explain",  # an old-style system Task line: the user's wins
            one_system_layout("fix", CODE_RULES, "x = BUG"),
            "```python\nx = FIXED\n```",
        ),
        (
            ONE_SYSTEM,
            one_system_layout("explain", "Explain the selected code in Markdown.", "x = foo()\ny = 2"),
            "**fake-kimi** explains 2 lines of python code (model moonshot-v1-8k).\n\nThe first line is `x = foo()`."
            "\n\n",
        ),
        (
            ONE_SYSTEM,  # the words inside fenced code are not the task's rules
            one_system_layout("explain", "Explain it.", "print('Reply with ONLY the code')"),
            "**fake-kimi** explains 1 lines of python code (model moonshot-v1-8k).\n\nThe first line is "
            "`print('Reply with ONLY the code')`.\n\n",
        ),
    ],
    ids=["fix", "rename", "document", "user-task-wins", "explain", "rules-in-code-ignored"],
)
def test_one_system_prompt_layout(client: httpx.Client, system: str, user: str, expected: str) -> None:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    reply = client.post("/chat/completions", json=chat(messages=messages)).json()
    assert reply["choices"][0]["message"]["content"] == expected


def test_code_tasks_in_the_user_message_answer_with_code_after_tools(client: httpx.Client) -> None:
    user = one_system_layout("fix", CODE_RULES, "x = BUG")
    messages = [
        {"role": "system", "content": ONE_SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": "", "tool_calls": [THINKING_TOOL_REPLAY[1]["tool_calls"][0]]},
        {"role": "tool", "tool_call_id": "read_file:0", "content": "text"},
    ]
    reply = client.post("/chat/completions", json=chat(messages=messages)).json()
    assert reply["choices"][0]["message"]["content"] == "```python\nx = FIXED\n```"


def test_reply_shaping_faults(client: httpx.Client, fake: FakeMoonshot) -> None:
    normal = client.post("/chat/completions", json=chat()).json()["choices"][0]["message"]["content"]
    fake.script(Fault("reply", content="exact", reasoning="why", finish_reason="tool_calls"), "think_tags", "length")
    exact = events(sse_data(client, chat()))
    assert (joined(exact, "content"), joined(exact, "reasoning_content")) == ("exact", "why")
    assert exact[-1]["choices"][0]["finish_reason"] == "tool_calls"
    tagged = client.post("/chat/completions", json=chat()).json()["choices"][0]
    assert tagged["message"]["content"] == "<think>fake hidden reasoning</think>" + normal
    cut_short = client.post("/chat/completions", json=chat()).json()["choices"][0]
    assert cut_short["finish_reason"] == "length"
    assert normal.startswith(cut_short["message"]["content"]) and cut_short["message"]["content"] != normal


@pytest.mark.parametrize(
    "body,reasoning_chars,content",
    [
        (chat("moonshot-v1-8k", max_tokens=3), 0, "**fake-kimi*"),
        (chat("kimi-k2.7-code", max_completion_tokens=5), 20, ""),  # reasoning spends the whole budget
    ],
)
def test_max_tokens_truncates_with_length(client: httpx.Client, body: dict, reasoning_chars: int, content: str) -> None:
    choice = client.post("/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == content
    assert len(choice["message"].get("reasoning_content", "")) == reasoning_chars


# ------------------------------------------------------------------------------------------ stream faults


def test_cut_closes_without_done(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script(Fault("cut", after_chunks=2), "cut")
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with connect_sse(client, "POST", "/chat/completions", json=chat(stream=True)) as source:
            for event in source.iter_sse():
                seen.append(event.data)
    assert "[DONE]" not in seen
    assert sum("content" in json.loads(d)["choices"][0]["delta"] for d in seen) == 3  # role chunk + 2
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=chat())  # non-streamed: half the announced body
    assert not fake.chat_requests()[-1].disconnected_early  # the fake hung up, not the client
    assert client.post("/chat/completions", json=chat()).status_code == 200


def test_not_json_line_then_normal_stream(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script(Fault("not_json", after_chunks=2))
    data = sse_data(client, chat())
    assert data[3] == "{not json" and data[-1] == "[DONE]"
    assert joined(events(data[:3] + data[4:]), "content") == "**fake-kimi** answers: hello"


def test_slow_first_token(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script(Fault("slow_first", delay=0.3))
    started = time.monotonic()
    with connect_sse(client, "POST", "/chat/completions", json=chat(stream=True)) as source:
        stamps = [(time.monotonic() - started, event.data) for event in source.iter_sse()]
    assert stamps[1][0] >= 0.3 and stamps[-1][1] == "[DONE]"
    assert stamps[1][0] - stamps[0][0] > 0.15  # headers and the role chunk are not held back
    # The delay counts from when the request was read (the fake's own work is inside it), never less.
    assert started + stamps[1][0] >= fake.chat_requests()[-1].time + 0.3


def test_drip_sends_a_byte_a_second(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script("drip")
    started = time.monotonic()
    with client.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
        first = next(response.iter_raw())
    assert (first, time.monotonic() - started < 0.8) == (b"d", True)
    assert wait_until(lambda: fake.chat_requests()[-1].disconnected_early)  # noticed mid-sleep


def test_huge_reply(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script("huge")
    chunks = events(sse_data(client, chat()))
    content = joined(chunks, "content")
    assert len(content) == 10 * 1024 * 1024 and len(chunks) == 2 + 160


# --------------------------------------------------------------------------------- connections and hang-ups


def local_address(response: httpx.Response) -> Any:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def test_keep_alive_reuses_the_connection(client: httpx.Client) -> None:
    first = client.get("/models")
    with client.stream("POST", "/chat/completions", json=chat(stream=True)) as streamed:
        streamed.read()
        second = local_address(streamed)
    third = client.post("/chat/completions", json=chat())
    assert local_address(first) == second == local_address(third)


def test_client_closing_a_stream_is_recorded(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(token_delay=0.02)
    fake.script(Fault("reply", content="x" * 600))
    with connect_sse(client, "POST", "/chat/completions", json=chat(stream=True)) as source:
        for index, _ in enumerate(source.iter_sse()):
            if index == 3:
                break
    assert wait_until(lambda: fake.chat_requests()[-1].disconnected_early)


def test_hang_up_is_noticed_during_a_long_wait(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.script(Fault("slow_first", delay=30))
    with connect_sse(client, "POST", "/chat/completions", json=chat(stream=True)) as source:
        next(source.iter_sse())  # the role chunk
    closed = time.monotonic()
    assert wait_until(lambda: fake.chat_requests()[-1].disconnected_early, timeout=1.0)
    assert time.monotonic() - closed < 0.5


def test_a_complete_stream_is_not_marked(client: httpx.Client, fake: FakeMoonshot) -> None:
    sse_data(client, chat())
    time.sleep(0.05)
    assert not fake.chat_requests()[-1].disconnected_early


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost", b"\x16\x03\x01\x00"])
def test_malformed_http_never_stops_the_server(client: httpx.Client, fake: FakeMoonshot, garbage: bytes) -> None:
    with socket.create_connection((fake.host, fake.port), timeout=2) as raw:
        raw.sendall(garbage)
        if garbage.endswith(b"\r\n\r\n"):
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
    assert client.get("/models").status_code == 200


def raw_exchange(fake: FakeMoonshot, head: str, body: bytes, *, expect_continue: bool = False) -> bytes:
    """Speak HTTP by hand, for what httpx never does; returns everything the fake sent until it closed."""
    with socket.create_connection((fake.host, fake.port), timeout=2) as raw:
        raw.sendall(head.format(port=fake.port, length=len(body)).encode())
        if expect_continue:
            assert raw.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.sendall(body)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    return received


def test_http_1_0_stream_is_framed_by_close(fake: FakeMoonshot) -> None:
    head = "POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer " + KEY + "\r\nContent-Length: {length}\r\n\r\n"
    received = raw_exchange(fake, head, json.dumps(chat(stream=True)).encode())
    headers, _, body = received.partition(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in headers.lower()
    assert body.endswith(b"data: [DONE]\n\n")


def test_expect_100_continue(fake: FakeMoonshot) -> None:
    head = (
        "POST /v1/tokenizers/estimate-token-count HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Authorization: Bearer " + KEY + "\r\nExpect: 100-continue\r\nConnection: close\r\n"
        "Content-Length: {length}\r\n\r\n"
    )
    received = raw_exchange(fake, head, json.dumps(chat()).encode(), expect_continue=True)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"data":{"total_tokens":6}}')


# ------------------------------------------------------------------------------------------- control API


def test_control_endpoints(client: httpx.Client, fake: FakeMoonshot) -> None:
    control = root(fake) + "/_fake"
    faults = {"faults": [{"kind": "rate_limit", "wait": 7}, "overloaded"]}
    assert httpx.post(control + "/script", json=faults).json() == {"queued": 2}
    assert "after 7 seconds" in client.post("/chat/completions", json=chat()).json()["error"]["message"]
    assert client.post("/chat/completions", json=chat("kimi-k2.5")).status_code == 429

    recorded = httpx.get(control + "/requests").json()["requests"]
    assert [(r["method"], r["path"], r["model"], r["disconnectedEarly"]) for r in recorded] == [
        ("POST", "/v1/chat/completions", "moonshot-v1-8k", False),
        ("POST", "/v1/chat/completions", "kimi-k2.5", False),
    ]
    assert recorded[0]["body"] == chat()

    config = {"chunkChars": 100, "usagePlacement": "final", "firstTokenDelay": 0, "tokenDelay": 0}
    assert httpx.post(control + "/config", json=config).status_code == 200
    chunks = events(sse_data(client, chat()))
    assert len(chunks) == 4 and chunks[-1]["choices"] == []  # role, all content, finish, usage

    assert httpx.post(control + "/script", json={"faults": ["teapot"]}).status_code == 400
    assert httpx.post(control + "/config", json={"chunkChars": 0}).status_code == 400
    assert httpx.post(control + "/reset").status_code == 200
    assert fake.requests == [] and fake.chunk_chars == 6 and fake.usage_placement == "choice"


def test_command_line_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "kimi_lsp.fake", "--port", str(port), "--key", "sk-cli"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = f"http://127.0.0.1:{port}/v1"
            assert process.stdout.readline() == f"fake-moonshot listening on {base_url}\n"
            assert httpx.get(base_url + "/models", headers={"Authorization": "Bearer sk-cli"}).status_code == 200
            assert httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0


async def test_loop_mode_and_wait_for_disconnect() -> None:
    fake = await FakeMoonshot(token_delay=0.01).start()
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            async with c.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
                async for _ in response.aiter_lines():
                    break
            assert await fake.wait_for_disconnect(2.0)
            assert (await c.get("/models")).status_code == 200
    finally:
        await fake.stop()
