"""The December 2026 line-up: every model against every request rule, accepted and rejected, over real sockets."""

from __future__ import annotations

import logging
from typing import Any, Optional

import httpx
import pytest

from kimi_lsp.fake import FakeMoonshot
from kimi_lsp.fake.models import RETIRED_MODEL_IDS

HELLO = [{"role": "user", "content": "hello"}]  # 6 tokens
K25, K26, K27, K27HS, K3, V1 = (
    "kimi-k2.5",
    "kimi-k2.6",
    "kimi-k2.7-code",
    "kimi-k2.7-code-highspeed",
    "kimi-k3",
    "moonshot-v1-8k",
)
MODELS = (K25, K26, K27, K27HS, K3, V1)
FIXED = "this model uses fixed sampling, do not set it"
NO_EFFORT_THINKING = 'thinking is not supported by model "kimi-k3"; use reasoning_effort'
ALWAYS_THINKS = {m: f'thinking cannot be disabled for model "{m}"' for m in (K27, K27HS)}


def post(client: httpx.Client, model: str, **fields: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": HELLO, **fields})


def outcome(response: httpx.Response) -> Optional[str]:
    """None for a 200, else the message of the 400 invalid_request_error (anything else fails the test)."""
    if response.status_code == 200:
        return None
    error = response.json()["error"]
    assert (response.status_code, error["type"]) == (400, "invalid_request_error"), response.text
    return str(error["message"])


def not_supported(field: str) -> dict[str, str]:
    return {m: f'{field} is not supported by model "{m}"' for m in MODELS}


# Each rule: the request fields, then what each model answers (None: accepted; a string: the 400 message).
RULES: list[tuple[str, dict[str, Any], dict[str, Optional[str]]]] = [
    ("no fields", {}, dict.fromkeys(MODELS)),
    (
        "thinking enabled",
        {"thinking": {"type": "enabled"}},
        {
            **dict.fromkeys((K25, K26, K27, K27HS)),
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "thinking disabled",
        {"thinking": {"type": "disabled"}},
        {
            **dict.fromkeys((K25, K26)),
            **ALWAYS_THINKS,
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "thinking of an unknown type",
        {"thinking": {"type": "auto"}},
        {
            **dict.fromkeys((K25, K26, K27, K27HS), 'invalid thinking: type must be "enabled" or "disabled"'),
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        'thinking.keep "all"',
        {"thinking": {"type": "enabled", "keep": "all"}},
        {
            K25: 'thinking.keep is not supported by model "kimi-k2.5"',
            **dict.fromkeys((K26, K27, K27HS)),
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "another thinking.keep",
        {"thinking": {"type": "enabled", "keep": "last"}},
        {
            K25: 'thinking.keep is not supported by model "kimi-k2.5"',
            **dict.fromkeys((K26, K27, K27HS), 'invalid thinking.keep: only "all" is allowed for this model'),
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "thinking.keep with thinking off",
        {"thinking": {"type": "disabled", "keep": "all"}},
        {
            K25: 'thinking.keep is not supported by model "kimi-k2.5"',
            K26: None,
            **ALWAYS_THINKS,
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "temperature 1",
        {"temperature": 1.0},
        {**dict.fromkeys((K25, K26, V1)), **dict.fromkeys((K27, K27HS, K3), f"invalid temperature: {FIXED}")},
    ),
    (
        "temperature 0.6",
        {"temperature": 0.6},
        {
            **dict.fromkeys((K25, K26), "invalid temperature: only 1 is allowed for this model"),
            **dict.fromkeys((K27, K27HS, K3), f"invalid temperature: {FIXED}"),
            V1: None,
        },
    ),
    (
        "temperature 0.6, thinking off",
        {"temperature": 0.6, "thinking": {"type": "disabled"}},
        {
            **dict.fromkeys((K25, K26)),
            **ALWAYS_THINKS,  # checked before sampling
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "temperature 1, thinking off",
        {"temperature": 1, "thinking": {"type": "disabled"}},
        {
            **dict.fromkeys((K25, K26), "invalid temperature: only 0.6 is allowed for this model"),
            **ALWAYS_THINKS,
            K3: NO_EFFORT_THINKING,
            V1: 'thinking is not supported by model "moonshot-v1-8k"',
        },
    ),
    (
        "temperature out of range",
        {"temperature": 1.5},
        {
            **dict.fromkeys((K25, K26), "invalid temperature: only 1 is allowed for this model"),
            **dict.fromkeys((K27, K27HS, K3), f"invalid temperature: {FIXED}"),
            V1: "invalid temperature: 1.5 is not in [0, 1]",
        },
    ),
    (
        "top_p 0.95",
        {"top_p": 0.95},
        {**dict.fromkeys((K25, K26, V1)), **dict.fromkeys((K27, K27HS, K3), f"invalid top_p: {FIXED}")},
    ),
    (
        "top_p 0.9",
        {"top_p": 0.9},
        {
            **dict.fromkeys((K25, K26), "invalid top_p: only 0.95 is allowed for this model"),
            **dict.fromkeys((K27, K27HS, K3), f"invalid top_p: {FIXED}"),
            V1: None,
        },
    ),
    ("n 1", {"n": 1}, dict.fromkeys(MODELS)),
    (
        "n 2",
        {"n": 2},
        {**dict.fromkeys((K25, K26, K27, K27HS, K3), "invalid n: only 1 is allowed for this model"), V1: None},
    ),
    (
        "presence_penalty 0.5",
        {"presence_penalty": 0.5},
        {
            **dict.fromkeys((K25, K26, K27, K27HS, K3), "invalid presence_penalty: only 0 is allowed for this model"),
            V1: None,
        },
    ),
    *[
        (f"reasoning_effort {effort}", {"reasoning_effort": effort}, {**not_supported("reasoning_effort"), K3: None})
        for effort in ("low", "high", "max")
    ],
    (
        "reasoning_effort medium",
        {"reasoning_effort": "medium"},
        {
            **not_supported("reasoning_effort"),
            K3: 'invalid reasoning_effort: only "low", "high" or "max" is allowed for this model',
        },
    ),
]
CASES = [
    pytest.param(model, fields, expected[model], id=f"{model}: {name}")
    for name, fields, expected in RULES
    for model in MODELS
]


def test_every_rule_names_every_model() -> None:
    assert all(set(expected) == set(MODELS) for _, _, expected in RULES)


@pytest.mark.parametrize("model,fields,expected", CASES)
def test_model_rules(client: httpx.Client, model: str, fields: dict, expected: Optional[str]) -> None:
    assert outcome(post(client, model, **fields)) == expected


@pytest.mark.parametrize(
    "model,fields,thinks",
    [
        (K25, {}, True),
        (K25, {"thinking": {"type": "disabled"}}, False),
        (K26, {}, True),
        (K26, {"thinking": {"type": "disabled"}}, False),
        (K27, {}, True),
        (K27HS, {"thinking": {"type": "enabled", "keep": "all"}}, True),
        (K3, {"reasoning_effort": "low"}, True),
        (V1, {}, False),
    ],
)
def test_which_replies_carry_reasoning(client: httpx.Client, model: str, fields: dict, thinks: bool) -> None:
    message = post(client, model, **fields).json()["choices"][0]["message"]
    assert ("reasoning_content" in message) == thinks


# --------------------------------------------------------------------------------------------- retired ids


@pytest.mark.parametrize("model", RETIRED_MODEL_IDS)
@pytest.mark.parametrize("path", ["/chat/completions", "/tokenizers/estimate-token-count"])
def test_retired_ids_are_not_found(client: httpx.Client, model: str, path: str) -> None:
    response = client.post(path, json={"model": model, "messages": HELLO})
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "resource_not_found_error", "message": f"Not found the model {model} or Permission denied"}
    }
    assert model not in {m["id"] for m in client.get("/models").json()["data"]}


# ---------------------------------------------------------------------------------------- thinking + tools

CALL = {"id": "read_file:0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}


def replay(**assistant: Any) -> list[dict]:
    return [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": "", "tool_calls": [CALL], **assistant},
        {"role": "tool", "tool_call_id": "read_file:0", "content": "text"},
    ]


MISSING = "thinking is enabled but reasoning_content is missing in assistant tool call message at index 1"


@pytest.mark.parametrize(
    "model,fields,assistant,expected",
    [
        *[(m, {}, {}, MISSING) for m in (K25, K26, K27, K27HS, K3)],
        *[(m, {}, {"reasoning_content": None}, MISSING) for m in (K25, K26, K27, K27HS, K3)],
        *[(m, {}, {"reasoning_content": ""}, None) for m in MODELS],  # present but empty is fine
        *[(m, {}, {"reasoning_content": "r"}, None) for m in MODELS],
        (K25, {"thinking": {"type": "disabled"}}, {}, None),
        (K26, {"thinking": {"type": "disabled"}}, {}, None),
        (V1, {}, {}, None),
    ],
)
def test_tool_replays_keep_reasoning_on_thinking_models(
    client: httpx.Client, model: str, fields: dict, assistant: dict, expected: Optional[str]
) -> None:
    response = client.post("/chat/completions", json={"model": model, "messages": replay(**assistant), **fields})
    assert outcome(response) == expected


# ------------------------------------------------------------------------------------------ reply limits


def too_long(context: int, requested: int) -> str:
    return f"Invalid request: Your request exceeded model token limit: {context} (requested: {requested})"


@pytest.mark.parametrize(
    "model,fields,expected",
    [
        (V1, {"max_completion_tokens": 8186}, None),
        (V1, {"max_completion_tokens": 8187}, too_long(8192, 8193)),
        (V1, {"max_tokens": 8187}, too_long(8192, 8193)),  # deprecated, still honoured
        (V1, {"max_tokens": 9000, "max_completion_tokens": 100}, None),  # max_completion_tokens wins
        (V1, {"max_tokens": 100, "max_completion_tokens": 9000}, too_long(8192, 9006)),
        (K26, {"max_completion_tokens": 262138}, None),
        (K26, {"max_completion_tokens": 262139}, too_long(262144, 262145)),
        (K3, {"max_completion_tokens": 262139}, None),  # kimi-k3's window is 1,048,576
        (K3, {"max_completion_tokens": 1048570}, None),
        (K3, {"max_completion_tokens": 1048571}, too_long(1048576, 1048577)),
        (V1, {"max_completion_tokens": 0}, "invalid max_completion_tokens: must be a positive integer"),
        (V1, {"max_completion_tokens": "9"}, "invalid max_completion_tokens: must be a positive integer"),
        (V1, {"max_tokens": True}, "invalid max_tokens: must be a positive integer"),
    ],
)
def test_completion_limit_and_the_window(
    client: httpx.Client, model: str, fields: dict, expected: Optional[str]
) -> None:
    assert outcome(post(client, model, **fields)) == expected


@pytest.mark.parametrize(
    "fields,content",
    [
        ({"max_completion_tokens": 3}, "**fake-kimi*"),
        ({"max_tokens": 3}, "**fake-kimi*"),
        ({"max_tokens": 1, "max_completion_tokens": 3}, "**fake-kimi*"),
    ],
)
def test_the_limit_in_use_cuts_the_reply(client: httpx.Client, fields: dict, content: str) -> None:
    choice = post(client, V1, **fields).json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (content, "length")


@pytest.mark.parametrize(
    "fields,deprecated",
    [
        ({"max_tokens": 50}, ["max_tokens"]),
        ({"max_tokens": 50, "max_completion_tokens": 50}, ["max_tokens"]),
        ({"max_completion_tokens": 50}, []),
        ({}, []),
    ],
)
def test_max_tokens_is_a_deprecation_warning(
    client: httpx.Client, fake: FakeMoonshot, caplog: pytest.LogCaptureFixture, fields: dict, deprecated: list[str]
) -> None:
    with caplog.at_level(logging.WARNING, logger="kimi_lsp.fake"):
        assert post(client, V1, **fields).status_code == 200
    assert fake.chat_requests()[-1].deprecated == deprecated
    warnings = [r for r in caplog.records if "max_tokens is deprecated" in r.getMessage()]
    assert len(warnings) == len(deprecated)
