"""The model catalogue, the request body each model gets, and what an answer costs.

The bodies are checked twice: against the rules as written here, and by sending every one of them to the fake
Moonshot server, which enforces the December 2026 rules (moonshot-api.md) and rejects a wrong body with a 400.
"""

from __future__ import annotations

import itertools

import pytest

from kimi_lsp import errors
from kimi_lsp.kimi.http import ClientPool, KimiClient
from kimi_lsp.kimi.models import BUILTIN_MODELS, SUCCESSOR, ModelInfo, current, from_live, resolve, retirement
from kimi_lsp.kimi.pricing import Ledger, cost, currency_for, describe, money, normalise_usage
from kimi_lsp.kimi.rules import chat_body, notices, thinks
from kimi_lsp.settings import CustomModel, Settings, merge_settings

CURRENT = [m for m in BUILTIN_MODELS.values() if m.status == "current"]
RETIRED = [m for m in BUILTIN_MODELS.values() if m.status == "retired"]
USER = [{"role": "user", "content": "hi"}]
TOOL_ROUND = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "",
        "tool_calls": [{"id": "read_file:0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "read_file:0", "name": "read_file", "content": "x = 1"},
]
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}}}]

# What the catalogue says of each model (moonshot-api.md, "Models and rules, December 2026").
CATALOGUE = [
    # id, window, vision, thinking, fixed sampling, reasoning_effort, keep
    ("kimi-k2.5", 262144, True, "switchable", True, False, False),
    ("kimi-k2.6", 262144, True, "switchable", True, False, True),
    ("kimi-k2.7-code", 262144, True, "always", True, False, True),
    ("kimi-k2.7-code-highspeed", 262144, True, "always", True, False, True),
    ("kimi-k3", 1048576, True, "always", True, True, False),
    ("moonshot-v1-8k", 8192, False, "none", False, False, False),
    ("moonshot-v1-128k", 131072, False, "none", False, False, False),
]


@pytest.mark.parametrize("mid,window,vision,thinking,fixed,effort,keep", CATALOGUE)
def test_catalogue(mid, window, vision, thinking, fixed, effort, keep):
    m = BUILTIN_MODELS[mid]
    assert (m.context_length, m.vision, m.thinking, m.fixed_sampling, m.reasoning_effort, m.thinking_keep) == (
        window,
        vision,
        thinking,
        fixed,
        effort,
        keep,
    )
    assert m.status == "current" and m.to_json()["status"] == "current"


@pytest.mark.parametrize("model", RETIRED, ids=lambda m: m.id)
def test_retired_ids_point_to_the_successor(model):
    assert model.successor == SUCCESSOR == "kimi-k2.6" and model not in current(BUILTIN_MODELS.values())
    assert model.to_json()["successor"] == "kimi-k2.6"
    assert "kimi-k2.6" in (retirement(model) or "")
    assert retirement(BUILTIN_MODELS["kimi-k2.5"]) is None


def test_retired_ids_are_all_there():
    assert {m.id for m in RETIRED} == {
        "kimi-k2-thinking",
        "kimi-k2-thinking-turbo",
        "kimi-k2-turbo-preview",
        "kimi-k2-0905-preview",
        "kimi-k2-0711-preview",
        "kimi-latest",
    }


def test_a_live_listing_wins_over_retirement():
    live = from_live({"id": "kimi-k2-thinking", "context_length": 100000})
    assert live.status == "current" and live.successor is None and live.context_length == 100000


# -- request bodies ---------------------------------------------------------------------------------------------

VARIANTS = [
    dict(zip(("thinking", "temperature", "reasoningEffort", "maxTokens"), combo))
    for combo in itertools.product(("auto", "enabled", "disabled"), (None, 0.3), (None, "high"), (None, 100))
]


def _settings(raw: dict) -> Settings:
    settings, problems = merge_settings({k: v for k, v in raw.items() if v is not None})
    assert problems == []
    return settings


def _expected_thinking(model: ModelInfo, settings: Settings, replay: bool):
    if model.thinking != "switchable":
        return None  # always-thinking models and kimi-k3 never get the object; the others have no switch
    if replay and model.thinking_keep and settings.thinking != "disabled":
        return {"type": "enabled", "keep": "all"}
    return None if settings.thinking == "auto" else {"type": settings.thinking}


@pytest.mark.parametrize("model", CURRENT, ids=lambda m: m.id)
@pytest.mark.parametrize("replay", [False, True], ids=["first-turn", "tool-round"])
def test_body_per_model(model, replay):
    messages = TOOL_ROUND if replay else USER
    for raw in VARIANTS:
        settings = _settings(raw)
        body = chat_body(model, settings, messages, tools=TOOLS if replay else None)
        assert "max_tokens" not in body
        assert body["max_completion_tokens"] == (raw["maxTokens"] or model.default_max_tokens)
        assert body.get("thinking") == _expected_thinking(model, settings, replay), raw
        assert ("temperature" in body) == (raw["temperature"] is not None and not model.fixed_sampling), raw
        assert "top_p" not in body
        assert body.get("reasoning_effort") == (raw["reasoningEffort"] if model.reasoning_effort else None), raw


@pytest.mark.parametrize(
    "window,prompt,asked,sent",
    [
        (262144, 1000, None, 32768),  # plenty of room: the default
        (262144, 250000, None, 12144),  # the rest of the window
        (262144, 250000, 100, 100),
        (262144, 262144, None, 32768),  # nothing left: not clamped to zero (the API's own 400 explains it)
        (1048576, 300000, 50000, 50000),
    ],
)
def test_max_completion_tokens_is_clamped_to_the_window(window, prompt, asked, sent):
    model = ModelInfo("m", window, thinking="always")
    body = chat_body(model, _settings({"maxTokens": asked}), USER, prompt_tokens=prompt)
    assert body["max_completion_tokens"] == sent


NOTICES = [
    ("kimi-k2.7-code", {"thinking": "disabled"}, ["always-thinks:kimi-k2.7-code"]),
    ("kimi-k3", {"thinking": "disabled"}, ["always-thinks:kimi-k3"]),
    ("kimi-k2.5", {"thinking": "disabled"}, []),
    ("kimi-k2.6", {"temperature": 0.2}, ["fixed-sampling:kimi-k2.6"]),
    ("moonshot-v1-8k", {"temperature": 0.2}, []),
    ("kimi-k2.5", {"reasoningEffort": "low"}, ["no-effort:kimi-k2.5"]),
    ("kimi-k3", {"reasoningEffort": "low"}, []),
]


@pytest.mark.parametrize("mid,raw,keys", NOTICES)
def test_notices(mid, raw, keys):
    model = BUILTIN_MODELS[mid]
    said = notices(model, _settings(raw))
    assert [k for k, _ in said] == keys
    if mid == "kimi-k2.7-code":
        assert "always thinks" in said[0][1] and thinks(model, _settings(raw))


@pytest.fixture
async def kimi(fake):
    pool = ClientPool()
    yield lambda settings: KimiClient(pool, settings, "sk-fake-valid-key")
    await pool.aclose()


@pytest.mark.parametrize("model", CURRENT, ids=lambda m: m.id)
async def test_the_fake_accepts_every_body_we_send(model, kimi, fake):
    """Every body the rules build, for every setting combination, is accepted by a fake that rejects wrong ones."""
    for raw, replay in itertools.product(VARIANTS, (False, True)):
        settings = _settings({**raw, "baseUrl": fake.base_url})
        messages = TOOL_ROUND if replay and model.tools else USER
        body = chat_body(model, settings, messages, tools=TOOLS if messages is TOOL_ROUND else None)
        reply = await kimi(settings).stream_chat(body, lambda kind, text: None)
        assert reply.done, (raw, replay)


@pytest.mark.parametrize(
    "mid,wrong",
    [
        ("kimi-k3", {"thinking": {"type": "enabled"}}),
        ("kimi-k2.7-code", {"thinking": {"type": "disabled"}}),
        ("kimi-k2.7-code", {"temperature": 1.0}),
        ("kimi-k2.6", {"temperature": 0.3}),
        ("kimi-k2.5", {"reasoning_effort": "high"}),
        ("kimi-k3", {"reasoning_effort": "extreme"}),
    ],
)
async def test_the_fake_rejects_what_the_rules_never_send(mid, wrong, kimi, fake):
    settings = Settings(base_url=fake.base_url)
    body = {**chat_body(BUILTIN_MODELS[mid], settings, USER), **wrong}
    with pytest.raises(errors.BadRequest):
        await kimi(settings).stream_chat(body, lambda kind, text: None)


@pytest.mark.parametrize("model", RETIRED, ids=lambda m: m.id)
async def test_retired_ids_answer_404(model, kimi, fake):
    settings = Settings(base_url=fake.base_url, model=model.id)
    with pytest.raises(errors.ModelNotFound):
        await kimi(settings).stream_chat(chat_body(model, settings, USER), lambda kind, text: None)


# -- prices ----------------------------------------------------------------------------------------------------------

USAGE = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000, "cached_tokens": 0}
CACHED = {**USAGE, "cached_tokens": 1_000_000}
PRICES = [
    # id, currency, usage, amount (None: no published price)
    ("kimi-k2.5", "USD", USAGE, 0.60 + 3.00),
    ("kimi-k2.5", "USD", CACHED, 0.10 + 3.00),
    ("kimi-k2.5", "CNY", USAGE, None),
    ("kimi-k2.6", "USD", USAGE, 0.95 + 4.00),
    ("kimi-k2.6", "CNY", CACHED, 1.10 + 27.0),
    ("kimi-k2.7-code", "USD", CACHED, 0.19 + 4.00),
    ("kimi-k2.7-code", "CNY", USAGE, 6.50 + 27.0),
    ("kimi-k2.7-code-highspeed", "CNY", USAGE, 13.0 + 54.0),
    ("kimi-k2.7-code-highspeed", "USD", USAGE, None),
    ("kimi-k3", "USD", USAGE, 3.00 + 15.00),
    ("kimi-k3", "CNY", CACHED, 2.0 + 100.0),
    ("moonshot-v1-8k", "USD", USAGE, None),
]


@pytest.mark.parametrize("mid,currency,usage,amount", PRICES)
def test_cost(mid, currency, usage, amount):
    spent = cost(usage, BUILTIN_MODELS[mid].price(currency), currency)
    if amount is None:
        assert spent is None
    else:
        assert spent is not None and spent["currency"] == currency and spent["amount"] == pytest.approx(amount)
        assert ("note" in spent) == (mid == "kimi-k3")


def test_web_search_calls_are_priced_per_call():
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}
    k26 = BUILTIN_MODELS["kimi-k2.6"]
    assert cost(usage, k26.price("USD"), "USD", web_searches=2)["amount"] == pytest.approx(0.008)
    assert cost(usage, k26.price("CNY"), "CNY", web_searches=1)["amount"] == pytest.approx(0.03)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({"prompt_tokens": 19, "completion_tokens": 21, "total_tokens": 40, "cached_tokens": 10}, (19, 21, 40, 10)),
        (
            {"prompt_tokens": 19, "completion_tokens": 21, "prompt_tokens_details": {"cached_tokens": 7}},
            (19, 21, 40, 7),
        ),
        ({"prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": 50}, (5, 1, 6, 5)),  # never more than prompt
        ({"prompt_tokens": "x", "completion_tokens": None, "cached_tokens": True}, (0, 0, 0, 0)),
    ],
)
def test_usage_from_every_reply_shape(raw, expected):
    u = normalise_usage(raw)
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"], u["cached_tokens"]) == expected
    assert normalise_usage(None) == {}


@pytest.mark.parametrize(
    "usage,spent,searches,line",
    [
        (
            {"total_tokens": 1234, "cached_tokens": 800},
            {"amount": 0.0012, "currency": "USD"},
            0,
            "1,234 tokens (800 cached) · $0.0012",
        ),
        ({"total_tokens": 50, "cached_tokens": 0}, {"amount": 0.00001, "currency": "CNY"}, 0, "50 tokens · <¥0.0001"),
        ({"total_tokens": 9, "cached_tokens": 0}, None, 1, "9 tokens · 1 web search"),
        (None, None, 0, "usage not reported"),
    ],
)
def test_the_cost_line(usage, spent, searches, line):
    assert describe(usage, spent, searches) == line


def test_money():
    assert (money(1.5, "USD"), money(0.0, "CNY"), money(2, "EUR")) == ("$1.5000", "¥0.0000", "2.0000 EUR")


@pytest.mark.parametrize(
    "raw,currency",
    [
        ({}, "USD"),
        ({"region": "china"}, "CNY"),
        ({"baseUrl": "https://api.moonshot.cn/v1"}, "CNY"),  # the host decides over the region
        ({"baseUrl": "https://api.moonshot.ai/v1", "region": "china"}, "USD"),
        ({"baseUrl": "http://127.0.0.1:9/v1"}, "USD"),
        ({"baseUrl": "http://127.0.0.1:9/v1", "region": "china"}, "CNY"),
    ],
)
def test_currency(raw, currency):
    assert currency_for(_settings(raw)) == currency


def test_a_custom_price_overrides_in_the_region_currency():
    custom = [CustomModel.model_validate({"id": "kimi-k2.6", "price": {"input": 1, "output": 2}})]
    m = resolve("kimi-k2.6", custom, currency="USD")
    assert (m.price("USD").input, m.price("USD").cached_input, m.price("USD").output) == (1, 1, 2)
    assert m.price("CNY") == BUILTIN_MODELS["kimi-k2.6"].price("CNY")  # the other currency keeps the table's
    assert m.thinking_keep and m.fixed_sampling  # capabilities the entry does not describe come from the table
    mine = resolve("my-model", [CustomModel(id="my-model")], currency="USD")
    assert mine.price("USD") is None


def test_the_ledger():
    ledger = Ledger()
    assert ledger.describe() == "no answers yet"
    ledger.record({"total_tokens": 100, "cached_tokens": 40}, {"amount": 0.001, "currency": "USD"})
    ledger.record({"total_tokens": 50, "cached_tokens": 0}, None)
    data = ledger.to_json()
    assert data["answers"] == 2 and data["unpriced"] == 1 and data["usage"]["total_tokens"] == 150
    assert data["text"] == "2 answers, 150 tokens (40 cached) · $0.0010 (1 without a known price)"
