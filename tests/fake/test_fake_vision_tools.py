"""The fake's vision model and tool-calling model: replies that depend on the image bytes, and a read_file loop."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from kimi_lsp.fake import FakeMoonshot

KEY = "sk-fake-valid-key"

# A real 1x1 RGB PNG (69 bytes) and a 1x1 GIF (43 bytes).
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
    b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND"
    b"\xaeB`\x82"
)
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00"
    b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PNG_LABEL = "img1=image/png,69B,sha=b1ff9c8e"
GIF_LABEL = "img2=image/gif,43B,sha=b1442e85"

CODE_SYSTEM = "Reply with ONLY the code for the picture, in one fenced code block.\nTask: mockup"
READ_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read lines of a workspace file.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "startLine": {"type": "integer"},
                "endLine": {"type": "integer"},
            },
            "required": ["path"],
        },
    },
}
LIST_TOOL = {
    "type": "function",
    "function": {
        "name": "list_files",
        "description": "List files.",
        "parameters": {"type": "object", "properties": {}},
    },
}
WEB_TOOL = {"type": "builtin_function", "function": {"name": "$web_search"}}
TOOLS = [READ_TOOL, LIST_TOOL]


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def vision_messages(task: str, text: str = "Look at this.", *images: dict, system: str = "") -> list[dict]:
    system = system or f"You are Kimi.\nTask: {task}"
    parts = [{"type": "text", "text": text}, *(images or [image(data_url(PNG))])]
    return [{"role": "system", "content": system}, {"role": "user", "content": parts}]


def post(client: httpx.Client, model: str, messages: list[dict], **fields: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": messages, **fields})


def message_of(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


def stream(client: httpx.Client, model: str, messages: list[dict], **fields: Any) -> list[dict]:
    body = {"model": model, "messages": messages, "stream": True, **fields}
    with connect_sse(client, "POST", "/chat/completions", json=body) as source:
        assert source.response.status_code == 200
        data = [event.data for event in source.iter_sse()]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def joined(chunks: list[dict], name: str) -> str:
    return "".join(c["choices"][0]["delta"].get(name, "") for c in chunks if c["choices"])


def tool_fragments(chunks: list[dict]) -> list[dict]:
    return [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]


# ------------------------------------------------------------------------------------------------- vision


def test_image_label_is_mime_size_and_sha() -> None:
    assert f"img1=image/png,{len(PNG)}B,sha={hashlib.sha256(PNG).hexdigest()[:8]}" == PNG_LABEL
    assert f"img2=image/gif,{len(GIF)}B,sha={hashlib.sha256(GIF).hexdigest()[:8]}" == GIF_LABEL


@pytest.mark.parametrize(
    "model,system,text,expected",
    [
        ("kimi-k2.5", "", "", "Fake alt text for image/png (69 bytes)"),
        ("moonshot-v1-8k-vision-preview", "", "", "Fake alt text for image/png (69 bytes)"),
        (
            "kimi-k2.5",
            "You are Kimi.\nTask: describe-image",
            "",
            f"**fake-kimi** sees 1 image(s): {PNG_LABEL}.\n\nThe picture is deterministic.",
        ),
        ("kimi-k2.5", "You are Kimi.\nTask: ask", "What is it?", f"**fake-kimi** answers about {PNG_LABEL}"),
        (
            "kimi-k2.5",
            CODE_SYSTEM,
            "File: a.html\nLanguage: html",
            f'```html\n<!-- mockup for {PNG_LABEL} -->\n<div class="mockup"></div>\n```',
        ),
        ("kimi-k2.5", CODE_SYSTEM, "Language: python", f"```python\n# mockup for {PNG_LABEL}\nmockup = None\n```"),
        ("kimi-k2.5", CODE_SYSTEM, "Language: css", f"```css\n/* mockup for {PNG_LABEL} */\n/* mockup */\n```"),
        ("kimi-k2.5", CODE_SYSTEM, "Language: lua", f"```lua\n-- mockup for {PNG_LABEL}\n/* mockup */\n```"),
        (
            "kimi-k2.5",
            CODE_SYSTEM,
            "Selected code:\n```tsx\nexport {}\n```",  # no Language line: the last fence's
            f"```tsx\n// mockup for {PNG_LABEL}\n/* mockup */\n```",
        ),
        ("kimi-k2.5", CODE_SYSTEM, "Implement this.", f"```\n// mockup for {PNG_LABEL}\n/* mockup */\n```"),
        ("kimi-k2.5", CODE_SYSTEM, "Language: plain text", f"```\n// mockup for {PNG_LABEL}\n/* mockup */\n```"),
    ],
    ids=[
        "alt-text",
        "alt-text-v1-vision",
        "describe-image",
        "ask",
        "mockup-html",
        "mockup-python",
        "mockup-css",
        "mockup-lua",
        "mockup-fence-lang",
        "mockup-no-lang",
        "mockup-plain-text",
    ],
)
def test_vision_tasks(client: httpx.Client, model: str, system: str, text: str, expected: str) -> None:
    messages = vision_messages("alt-text", text or "Look at this.", system=system)
    assert message_of(post(client, model, messages))["content"] == expected
    if model == "kimi-k2.5":  # streamed the same
        assert joined(stream(client, model, messages), "content") == expected


def test_every_image_is_listed_in_order(client: httpx.Client) -> None:
    messages = vision_messages("describe-image", "Two.", image(data_url(PNG)), image(data_url(GIF, "image/gif")))
    assert message_of(post(client, "kimi-k2.5", messages))["content"] == (
        f"**fake-kimi** sees 2 image(s): {PNG_LABEL}, {GIF_LABEL}.\n\nThe picture is deterministic."
    )


def test_changed_bytes_change_the_answer(client: httpx.Client) -> None:
    messages = vision_messages("describe-image", "x", image(data_url(PNG[:-1])))
    content = message_of(post(client, "kimi-k2.5", messages))["content"]
    assert "image/png,68B," in content and PNG_LABEL not in content


@pytest.mark.parametrize("model", ["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-auto"])
def test_models_without_vision_refuse_images(client: httpx.Client, fake: FakeMoonshot, model: str) -> None:
    response = post(client, model, vision_messages("describe-image"))
    assert error_of(response) == (
        400,
        "invalid_request_error",
        f"Invalid request: Model {model} does not support image input",
    )
    assert fake.chat_requests()[-1].body["messages"][1]["content"][1]["image_url"]["url"] == data_url(PNG)


@pytest.mark.parametrize(
    "url,message_part",
    [
        ("https://example.com/a.png", "not http(s) URLs"),
        ("http://example.com/a.png", "not http(s) URLs"),
        (data_url(PNG, "image/bmp"), "unsupported image type 'image/bmp'"),
        (data_url(PNG, "text/plain"), "unsupported image type 'text/plain'"),
        ("data:image/png," + PNG.hex(), "must be a base64 data URL"),
        ("data:image/png;base64,%%%not-base64", "not valid base64"),
        ("data:image/png;base64,", "the image data is empty"),
        ("ms://file-123", "file file-123 not found"),
        ("file:///tmp/a.png", "must be a base64 data URL"),
        ("", "image_url.url is required"),
    ],
)
def test_bad_image_urls_are_refused(client: httpx.Client, url: str, message_part: str) -> None:
    status, error_type, message = error_of(post(client, "kimi-k2.5", vision_messages("ask", "x", image(url))))
    assert (status, error_type) == (400, "invalid_request_error")
    assert message.startswith("Invalid request: ") and message_part in message


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg", "image/webp", "image/gif"])
def test_supported_mimes(client: httpx.Client, mime: str) -> None:
    content = message_of(post(client, "kimi-k2.5", vision_messages("alt-text", "x", image(data_url(PNG, mime)))))
    assert content["content"] == f"Fake alt text for {mime} (69 bytes)"


def test_image_requests_count_1000_tokens_an_image(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "abcd"}, image(data_url(PNG))]}]
    usage = post(client, "kimi-k2.5", messages).json()["usage"]
    assert usage["prompt_tokens"] == 4 + 1 + 1000


# -------------------------------------------------------------------------------------------------- tools


def ask(text: str, system: str = "You are Kimi.\nTask: ask") -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def assistant_from(reply: dict) -> dict:
    """The assistant message a client replays: content, reasoning_content and the tool calls it received."""
    message = {
        "role": "assistant",
        "content": reply.get("content") or "",
        "tool_calls": [{k: v for k, v in call.items() if k != "index"} for call in reply["tool_calls"]],
    }
    if reply.get("reasoning_content"):
        message["reasoning_content"] = reply["reasoning_content"]
    return message


def tool_result(call_id: str, content: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "name": "read_file", "content": content}


@pytest.mark.parametrize(
    "model,reasoning",
    [
        ("kimi-k2.7-code", "I should read src/util.py."),
        ("kimi-k2.5", "I should read src/util.py."),
        ("moonshot-v1-8k", ""),
    ],
)
def test_streamed_tool_call(client: httpx.Client, model: str, reasoning: str) -> None:
    chunks = stream(
        client,
        model,
        ask("Please read `src/util.py` and read helper.py."),
        tools=TOOLS,
        stream_options={"include_usage": True},
    )
    kinds = [k for c in chunks[1:] if c["choices"] for k in c["choices"][0]["delta"]]
    assert kinds == ["reasoning_content"] * kinds.count("reasoning_content") + ["tool_calls", "tool_calls"]
    assert joined(chunks, "reasoning_content") == reasoning and joined(chunks, "content") == ""
    first, second = tool_fragments(chunks)
    arguments = first["function"]["arguments"] + second["function"]["arguments"]
    assert first == {
        "index": 0,
        "id": "read_file:0",
        "type": "function",
        "function": {"name": "read_file", "arguments": first["function"]["arguments"]},
    }
    assert second == {"index": 0, "function": {"arguments": second["function"]["arguments"]}}
    assert first["function"]["arguments"] and second["function"]["arguments"]
    assert arguments == '{"path": "src/util.py", "startLine": 1, "endLine": 200}'
    assert json.loads(arguments) == {"path": "src/util.py", "startLine": 1, "endLine": 200}
    final = [c for c in chunks if c["choices"]][-1]["choices"][0]
    assert final["finish_reason"] == "tool_calls" and final["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_non_streamed_tool_call(client: httpx.Client) -> None:
    response = post(client, "kimi-k2.7-code", ask("read a.py"), tools=TOOLS)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "I should read a.py.",
        "tool_calls": [
            {
                "index": 0,
                "id": "read_file:0",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a.py", "startLine": 1, "endLine": 200}'},
            }
        ],
    }


def test_full_tool_loop(client: httpx.Client, fake: FakeMoonshot) -> None:
    """Two reads, one a round, then an answer built from the results; the replayed history is accepted."""
    messages = ask("Read helper.py, then read docs/missing.md. What does main do?")
    first = message_of(post(client, "kimi-k2.7-code", messages, tools=TOOLS))
    messages += [assistant_from(first), tool_result("read_file:0", "\n\n  def helper():  \n    return 42\n")]
    second = message_of(post(client, "kimi-k2.7-code", messages, tools=TOOLS))
    assert second["reasoning_content"] == "I should read docs/missing.md."
    assert second["tool_calls"][0]["id"] == "read_file:1"
    assert json.loads(second["tool_calls"][0]["function"]["arguments"])["path"] == "docs/missing.md"
    messages += [assistant_from(second), tool_result("read_file:1", '{"error": "file not found: docs/missing.md"}')]
    final = stream(client, "kimi-k2.7-code", messages, tools=TOOLS)
    assert joined(final, "content") == (
        "**fake-kimi** read helper.py: def helper():\n"
        "**fake-kimi** could not read docs/missing.md: file not found: docs/missing.md"
    )
    assert joined(final, "reasoning_content")  # the usual reasoning before an answer
    assert final[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.chat_requests()[-1].body["messages"] == messages  # the whole history is recorded


@pytest.mark.parametrize(
    "content,line",
    [
        ("x" * 100, "**fake-kimi** read a.py: " + "x" * 80),
        ("Error: " + "e" * 200, "**fake-kimi** could not read a.py: Error: " + "e" * 113),
        (
            "error reading a.py: denied (.env files are never read)\nmore",
            "**fake-kimi** could not read a.py: error reading a.py: denied (.env files are never read)",
        ),
        ('{"error": {"code": "denied"}}', '**fake-kimi** could not read a.py: {"code": "denied"}'),
        ('{"content": "ok"}', '**fake-kimi** read a.py: {"content": "ok"}'),
    ],
)
def test_tool_result_lines(client: httpx.Client, content: str, line: str) -> None:
    messages = ask("read a.py")
    messages += [
        assistant_from(message_of(post(client, "moonshot-v1-8k", messages, tools=TOOLS))),
        tool_result("read_file:0", content),
    ]
    assert message_of(post(client, "moonshot-v1-8k", messages, tools=TOOLS))["content"] == line


def test_code_tasks_answer_with_code_after_tools(client: httpx.Client) -> None:
    system = "Reply with ONLY the code that replaces the selected code.\nTask: fix"
    messages = ask("Selected code:\n```python\nBUG()\n```\n\nInstruction: read util.py first", system)
    messages += [
        assistant_from(message_of(post(client, "moonshot-v1-8k", messages, tools=TOOLS))),
        tool_result("read_file:0", "def util(): ..."),
    ]
    assert message_of(post(client, "moonshot-v1-8k", messages, tools=TOOLS))["content"] == "```python\nFIXED()\n```"


def test_no_tool_call_without_tools_or_with_tool_choice_none(client: httpx.Client) -> None:
    assert message_of(post(client, "moonshot-v1-8k", ask("read a.py")))["content"] == "**fake-kimi** answers: read a.py"
    assert (
        message_of(post(client, "moonshot-v1-8k", ask("read a.py"), tools=[LIST_TOOL]))["content"]
        == "**fake-kimi** answers: read a.py"
    )  # read_file not offered: never called
    response = post(client, "moonshot-v1-8k", ask("read a.py"), tools=TOOLS, tool_choice="none")
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert message_of(response)["content"] == "**fake-kimi** answers: read a.py"


def test_keep_calling_tools_then_tool_choice_none_answers(client: httpx.Client) -> None:
    messages = ask("KEEP_CALLING_TOOLS: read notes.txt")
    for n in range(4):
        reply = message_of(post(client, "kimi-k2.5", messages, tools=TOOLS))
        call = reply["tool_calls"][0]
        assert (call["id"], json.loads(call["function"]["arguments"])["path"]) == (f"read_file:{n}", "notes.txt")
        messages += [assistant_from(reply), tool_result(call["id"], f"round {n}")]
    assert (
        message_of(post(client, "kimi-k2.5", ask("KEEP_CALLING_TOOLS"), tools=TOOLS))["tool_calls"][0]["function"][
            "arguments"
        ]
        == '{"path": "README.md", "startLine": 1, "endLine": 200}'
    )
    final = post(client, "kimi-k2.5", messages, tools=TOOLS, tool_choice="none").json()["choices"][0]
    assert final["finish_reason"] == "stop" and "tool_calls" not in final["message"]
    assert final["message"]["content"] == "\n".join(f"**fake-kimi** read notes.txt: round {n}" for n in range(4))


def test_web_search_flow(client: httpx.Client) -> None:
    messages = ask("Do a web search for the h11 changelog please")
    assert "tool_calls" not in message_of(post(client, "kimi-k2.5", messages, tools=TOOLS))  # not offered
    tools = [*TOOLS, WEB_TOOL]
    reply = message_of(post(client, "kimi-k2.5", messages, tools=tools, thinking={"type": "disabled"}))
    call = reply["tool_calls"][0]
    query = "Do a web search for the h11 changelog pl"  # the first 40 characters
    assert call == {
        "index": 0,
        "id": "$web_search:0",
        "type": "builtin_function",
        "function": {"name": "$web_search", "arguments": json.dumps({"query": query})},
    }
    messages += [
        assistant_from(reply),
        {"role": "tool", "tool_call_id": call["id"], "name": "$web_search", "content": call["function"]["arguments"]},
    ]
    answer = message_of(post(client, "kimi-k2.5", messages, tools=tools, thinking={"type": "disabled"}))
    assert answer["content"] == f"**fake-kimi** searched the web for: {query}"


THINKING_CALL = {
    "id": "read_file:0",
    "type": "function",
    "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
}


@pytest.mark.parametrize(
    "model,messages,message",
    [
        (
            "kimi-k2.7-code",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [THINKING_CALL]},
                tool_result("read_file:0", "x"),
            ],
            "thinking is enabled but reasoning_content is missing in assistant tool call message at index 1",
        ),
        (
            "kimi-k2.5",
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "reasoning_content": None, "tool_calls": [THINKING_CALL]},
                tool_result("read_file:0", "x"),
            ],
            "thinking is enabled but reasoning_content is missing in assistant tool call message at index 2",
        ),
        (
            "moonshot-v1-8k",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [THINKING_CALL]},
                tool_result("read_file:9", "x"),
            ],
            "Invalid request: tool_call_id read_file:9 of the message at position 2 is not found in the tool calls "
            "of a preceding assistant message",
        ),
        (
            "moonshot-v1-8k",
            [{"role": "user", "content": "read a.py"}, tool_result("read_file:0", "x")],
            "Invalid request: tool_call_id read_file:0 of the message at position 1 is not found in the tool calls "
            "of a preceding assistant message",
        ),
        (
            "moonshot-v1-8k",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [THINKING_CALL]},
                tool_result("read_file:0", "x"),
                tool_result("read_file:0", "y"),
            ],
            "Invalid request: tool_call_id read_file:0 of the message at position 3 answers a tool call that already "
            "has a tool message",
        ),
        (
            "moonshot-v1-8k",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [THINKING_CALL]},
            ],
            "Invalid request: tool call read_file:0 of the assistant message at position 1 has no tool message "
            "answering it",
        ),
        (
            "moonshot-v1-8k",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [THINKING_CALL]},
                {"role": "tool", "content": "x"},
            ],
            "Invalid request: the message at position 2 with role 'tool' must have a tool_call_id",
        ),
        (
            "moonshot-v1-8k",
            [
                {"role": "user", "content": "read a.py"},
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
            ],
            "Invalid request: invalid tool call in the message at position 1",
        ),
    ],
)
def test_tool_history_validation(
    client: httpx.Client, fake: FakeMoonshot, model: str, messages: list[dict], message: str
) -> None:
    response = post(client, model, messages, tools=TOOLS)
    assert error_of(response) == (400, "invalid_request_error", message)
    assert fake.chat_requests()[-1].body["messages"] == messages


@pytest.mark.parametrize(
    "tools", [{"read_file": {}}, [{"type": "function"}], [{"type": "code", "function": {"name": "x"}}], ["read_file"]]
)
def test_bad_tool_definitions(client: httpx.Client, tools: Any) -> None:
    status, error_type, message = error_of(post(client, "moonshot-v1-8k", ask("hi"), tools=tools))
    assert (status, error_type) == (400, "invalid_request_error") and message.startswith("Invalid request: ")


def test_replay_with_reasoning_is_accepted_by_thinking_models(client: httpx.Client) -> None:
    messages = ask("read a.py")
    reply = message_of(post(client, "kimi-k2.7-code", messages, tools=TOOLS))
    messages += [assistant_from(reply), tool_result("read_file:0", "print('hi')")]
    assert (
        message_of(post(client, "kimi-k2.7-code", messages, tools=TOOLS))["content"]
        == "**fake-kimi** read a.py: print('hi')"
    )
    without_tools = post(client, "kimi-k2.7-code", messages)  # a replay needs no tools to be valid
    assert message_of(without_tools)["content"] == "**fake-kimi** read a.py: print('hi')"
