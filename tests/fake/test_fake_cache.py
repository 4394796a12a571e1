"""The fake's prefix cache: `cached_tokens` for prompts that share a prefix with recent ones, over real sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from kimi_lsp.fake import FakeMoonshot
from kimi_lsp.fake.cache import MAX_PROMPTS, common_prefix_length, prompt_text

KEY = "sk-fake-valid-key"
SYSTEM = "s" * 4000
# "<|system|>\n" (11) + SYSTEM + "\n<|user|>\n" (10): the shared prefix of two prompts whose user texts differ.
SHARED_TOKENS = (11 + 4000 + 10) // 4


def messages(user: str, system: str = SYSTEM) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def usage_of(client: httpx.Client, msgs: list[dict], model: str = "kimi-k2.6", **fields: Any) -> dict:
    response = client.post("/chat/completions", json={"model": model, "messages": msgs, **fields})
    assert response.status_code == 200, response.text
    return dict(response.json()["usage"])


def cached(usage: dict) -> int:
    """The cached tokens, checked to be the same in both places the reference mentions."""
    assert usage["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
    assert usage["cached_tokens"] <= usage["prompt_tokens"]
    return int(usage["cached_tokens"])


def test_a_shared_prefix_is_cached(client: httpx.Client) -> None:
    assert cached(usage_of(client, messages("Apple pie"))) == 0  # nothing before it
    assert cached(usage_of(client, messages("Banana split"))) == SHARED_TOKENS


def test_the_longest_prefix_among_recent_prompts_wins(client: httpx.Client) -> None:
    usage_of(client, messages("A" * 2000))
    usage_of(client, messages("B"))
    assert cached(usage_of(client, messages("A" * 2000 + "!"))) == (11 + 4000 + 10 + 2000) // 4


def test_an_identical_prompt_is_cached_whole(client: httpx.Client) -> None:
    first = usage_of(client, messages("same"))
    again = usage_of(client, messages("same"))
    assert cached(again) == len(prompt_text(messages("same"))) // 4 and again["prompt_tokens"] == first["prompt_tokens"]


@pytest.mark.parametrize(
    "first,second",
    [
        (messages("x", system="a" + SYSTEM), messages("x", system="b" + SYSTEM)),  # differs at once
        (messages("x", system="s" * 1000), messages("y", system="s" * 1000)),  # shared, but under 256 tokens
        (messages("x"), [{"role": "user", "content": SYSTEM}]),  # same text, another role
    ],
    ids=["different", "too-short", "other-role"],
)
def test_no_useful_prefix_is_not_cached(client: httpx.Client, first: list[dict], second: list[dict]) -> None:
    usage_of(client, first)
    assert cached(usage_of(client, second)) == 0


def test_the_cache_is_per_model(client: httpx.Client) -> None:
    usage_of(client, messages("one"), model="kimi-k2.6")
    assert cached(usage_of(client, messages("two"), model="kimi-k2.5")) == 0
    assert cached(usage_of(client, messages("three"), model="kimi-k2.6")) == SHARED_TOKENS


def test_the_cache_is_per_key() -> None:
    fake = FakeMoonshot(valid_keys=("sk-a", "sk-b")).start_in_thread()
    try:
        with httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer sk-a"}) as a:
            usage_of(a, messages("one"))
        with httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer sk-b"}) as b:
            assert cached(usage_of(b, messages("two"))) == 0
            assert cached(usage_of(b, messages("three"))) == SHARED_TOKENS
    finally:
        fake.stop_thread()


def test_prompts_expire_after_the_ttl(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(cache_ttl=0.3)
    usage_of(client, messages("one"))
    assert cached(usage_of(client, messages("two"))) == SHARED_TOKENS
    time.sleep(0.35)
    assert cached(usage_of(client, messages("three"))) == 0


def test_a_zero_ttl_turns_the_cache_off(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(cache_ttl=0)
    usage_of(client, messages("one"))
    assert cached(usage_of(client, messages("one"))) == 0
    fake.configure(cache_ttl=300)
    usage_of(client, messages("one"))  # nothing was remembered while it was off
    assert cached(usage_of(client, messages("one"))) > 0


def test_only_the_latest_prompts_are_kept(client: httpx.Client) -> None:
    usage_of(client, messages("one"))
    for index in range(MAX_PROMPTS):
        usage_of(client, messages("x", system=f"{index:03d}" + SYSTEM))
    assert cached(usage_of(client, messages("two"))) == 0  # the first prompt was pushed out


def test_reset_forgets_the_cache(client: httpx.Client, fake: FakeMoonshot) -> None:
    usage_of(client, messages("one"))
    fake.reset()
    assert cached(usage_of(client, messages("two"))) == 0


def test_failed_requests_are_not_cached(client: httpx.Client) -> None:
    bad = client.post("/chat/completions", json={"model": "kimi-k2.6", "messages": messages("one"), "top_p": 0.5})
    assert bad.status_code == 400
    assert cached(usage_of(client, messages("two"))) == 0


def test_streamed_usage_reports_the_cache_in_every_place(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(usage_placement="both")
    usage_of(client, messages("one"))
    body = {"model": "kimi-k2.6", "messages": messages("two"), "stream": True}
    with connect_sse(client, "POST", "/chat/completions", json=body) as source:
        chunks = [json.loads(e.data) for e in source.iter_sse() if e.data != "[DONE]"]
    in_choice = chunks[-2]["choices"][0]["usage"]
    top_level = chunks[-1]["usage"]
    assert in_choice == top_level and cached(top_level) == SHARED_TOKENS


def test_control_endpoint_sets_the_ttl(client: httpx.Client, fake: FakeMoonshot) -> None:
    config = fake.base_url.removesuffix("/v1") + "/_fake/config"
    assert httpx.post(config, json={"cacheTtl": 0}).status_code == 200
    assert fake.cache_ttl == 0
    assert httpx.post(config, json={"cacheTtl": -1}).status_code == 400
    fake.reset()
    assert fake.cache_ttl == 300


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    "second_image,expect_hit",
    [(IMAGE, True), ({"type": "image_url", "image_url": {"url": "data:image/png;base64,BBBB"}}, False)],
)
def test_images_take_part_in_the_prefix(client: httpx.Client, second_image: dict, expect_hit: bool) -> None:
    def with_image(image: dict, text: str) -> list[dict]:
        return [{"role": "user", "content": [image, {"type": "text", "text": SYSTEM + text}]}]

    usage_of(client, with_image(IMAGE, "one"))
    assert (cached(usage_of(client, with_image(second_image, "two"))) > 1000) == expect_hit


@pytest.mark.parametrize(
    "a,b,length",
    [
        ("", "", 0),
        ("abc", "abd", 2),
        ("abc", "abc", 3),
        ("abc", "abcdef", 3),
        ("x" * 10000, "x" * 10000, 10000),
        ("x" * 9000 + "a", "x" * 9000 + "b", 9000),  # past two whole blocks
        ("x" * 4096 + "a", "x" * 4096 + "b", 4096),  # at a block's edge
    ],
)
def test_common_prefix_length(a: str, b: str, length: int) -> None:
    assert common_prefix_length(a, b) == common_prefix_length(b, a) == length
