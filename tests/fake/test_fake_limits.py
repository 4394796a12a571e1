"""The fake's account limits: the rate-limit tier mode (concurrency and RPM 429s) and the balance."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from httpx_sse import connect_sse

from kimi_lsp.fake import FakeMoonshot, Fault
from kimi_lsp.fake.limits import TIERS

KEY = "sk-fake-valid-key"
CHAT = {"model": "moonshot-v1-8k", "messages": [{"role": "user", "content": "hello"}]}
ACCOUNT = "Your account org-fake<ak-fake> request reached organization "
CONCURRENCY_BODY = {
    "error": {
        "type": "rate_limit_reached_error",
        "message": ACCOUNT + "max concurrency: 1, please try again after 1 seconds",
    }
}


def rpm_body(wait: int, rpm: int = 3) -> dict:
    message = f"{ACCOUNT}max RPM: {rpm}, please try again after {wait} seconds"
    return {"error": {"type": "rate_limit_reached_error", "message": message}}


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def open_stream(fake: FakeMoonshot, key: str = KEY) -> Iterator[Iterator[str]]:
    """A streamed chat held open on its own connection: yields its data lines after the role chunk arrived."""
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as other:
        with connect_sse(other, "POST", "/chat/completions", json={**CHAT, "stream": True}) as source:
            assert source.response.status_code == 200
            events = (event.data for event in source.iter_sse())
            next(events)  # the role chunk: the request is in flight
            yield events


def slow(fake: FakeMoonshot) -> None:
    fake.configure(token_delay=0.05)
    fake.script(Fault("reply", content="x" * 60))  # ten chunks, half a second


# --------------------------------------------------------------------------------------------- concurrency


def test_a_second_request_in_flight_gets_the_exact_concurrency_429(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=0)
    slow(fake)
    with open_stream(fake) as events:
        assert fake.in_flight(KEY) == 1
        refused = client.post("/chat/completions", json=CHAT)
        assert (refused.status_code, refused.json()) == (429, CONCURRENCY_BODY)
        assert refused.headers["content-type"] == "application/json"
        assert fake.in_flight(KEY) == 1  # a refused request is not in flight
        assert list(events)[-1] == "[DONE]"
    assert wait_until(lambda: fake.in_flight(KEY) == 0)
    assert client.post("/chat/completions", json=CHAT).status_code == 200  # the third of 3 RPM


def test_non_streamed_reply_frees_its_slot_before_the_client_can_ask_again(
    client: httpx.Client, fake: FakeMoonshot
) -> None:
    fake.configure(tier=0, rpm_window=0.3)
    for _ in range(3):
        with httpx.Client(base_url=fake.base_url, headers={"Authorization": f"Bearer {KEY}"}) as fresh:
            assert client.post("/chat/completions", json=CHAT).status_code == 200
            assert fresh.post("/chat/completions", json=CHAT).status_code == 200  # another connection, at once
        time.sleep(0.31)  # an empty RPM window again


@pytest.mark.parametrize("how", ["cut", "client_hangs_up", "slow_first_hang_up", "error_fault"])
def test_in_flight_is_released_however_the_reply_ends(client: httpx.Client, fake: FakeMoonshot, how: str) -> None:
    fake.configure(tier=0)
    if how == "cut":
        fake.script(Fault("cut", after_chunks=1))
        with pytest.raises(httpx.RemoteProtocolError):
            with connect_sse(client, "POST", "/chat/completions", json={**CHAT, "stream": True}) as source:
                list(source.iter_sse())
    elif how == "error_fault":
        fake.script("overloaded")
        assert client.post("/chat/completions", json=CHAT).status_code == 429
    else:
        if how == "slow_first_hang_up":
            fake.script(Fault("slow_first", delay=30))
        else:
            slow(fake)
        with open_stream(fake):
            assert fake.in_flight(KEY) == 1
        assert wait_until(lambda: fake.chat_requests()[-1].disconnected_early)
    assert wait_until(lambda: fake.in_flight(KEY) == 0)
    assert client.post("/chat/completions", json=CHAT).status_code == 200


# ---------------------------------------------------------------------------------------------------- RPM


@pytest.mark.parametrize("window,wait", [(60, 60), (30, 30), (2.5, 3), (0.3, 1)])
def test_the_fourth_request_in_a_window_gets_the_rpm_429_with_its_wait(
    client: httpx.Client, fake: FakeMoonshot, window: float, wait: int
) -> None:
    fake.configure(tier=0, rpm_window=window)
    assert [client.post("/chat/completions", json=CHAT).status_code for _ in range(3)] == [200] * 3
    refused = client.post("/chat/completions", json=CHAT)
    assert (refused.status_code, refused.json()) == (429, rpm_body(wait))


def test_the_wait_counts_down_from_the_oldest_request(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=0, rpm_window=3)
    client.post("/chat/completions", json=CHAT)
    time.sleep(1.2)
    client.post("/chat/completions", json=CHAT)
    client.post("/chat/completions", json=CHAT)
    assert client.post("/chat/completions", json=CHAT).json() == rpm_body(2)  # 3 - 1.2 s, rounded up


def test_the_window_slides(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=0, rpm_window=0.4)
    for _ in range(3):
        assert client.post("/chat/completions", json=CHAT).status_code == 200
    assert client.post("/chat/completions", json=CHAT).status_code == 429
    time.sleep(0.45)
    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_a_concurrency_refusal_costs_an_rpm_slot_and_an_rpm_refusal_does_not(
    client: httpx.Client, fake: FakeMoonshot
) -> None:
    fake.configure(tier=0, rpm_window=0.6)
    slow(fake)
    with open_stream(fake) as events:  # slot 1
        assert client.post("/chat/completions", json=CHAT).json() == CONCURRENCY_BODY  # slot 2
        assert client.post("/chat/completions", json=CHAT).json() == CONCURRENCY_BODY  # slot 3
        assert client.post("/chat/completions", json=CHAT).json() == rpm_body(1)  # no slot
        list(events)
    time.sleep(0.65)  # honouring the hint works: the refused-for-RPM request did not extend the window
    assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_refused_requests_are_recorded_with_status_and_time(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=0)
    started = time.monotonic()
    statuses = [client.post("/chat/completions", json=CHAT).status_code for _ in range(5)]
    recorded = fake.chat_requests()
    assert statuses == [200, 200, 200, 429, 429]
    assert [r.status for r in recorded] == statuses
    assert [r.error_type for r in recorded] == [None] * 3 + ["rate_limit_reached_error"] * 2
    assert all(started <= a.time <= b.time for a, b in zip(recorded, recorded[1:]))


def test_a_refused_request_consumes_no_fault(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=0, rpm_window=0.3)
    for _ in range(3):
        client.post("/chat/completions", json=CHAT)
    fake.script("overloaded")
    assert client.post("/chat/completions", json=CHAT).json()["error"]["message"].startswith(ACCOUNT + "max RPM")
    time.sleep(0.35)
    assert client.post("/chat/completions", json=CHAT).json()["error"]["type"] == "engine_overloaded_error"


def test_limits_are_per_key() -> None:
    fake = FakeMoonshot(valid_keys=("sk-a", "sk-b"), tier=0).start_in_thread()
    try:
        headers = {"Authorization": "Bearer sk-a"}
        with httpx.Client(base_url=fake.base_url, headers=headers) as a:
            assert [a.post("/chat/completions", json=CHAT).status_code for _ in range(4)] == [200] * 3 + [429]
            slow(fake)
            with open_stream(fake, "sk-b"):
                assert (fake.in_flight("sk-a"), fake.in_flight("sk-b")) == (0, 1)
            assert a.get("/models").status_code == 200  # only chat requests are limited
    finally:
        fake.stop_thread()


# ------------------------------------------------------------------------------------------- off, config


def test_without_a_tier_nothing_is_limited(client: httpx.Client, fake: FakeMoonshot) -> None:
    slow(fake)
    with open_stream(fake):
        assert [client.post("/chat/completions", json=CHAT).status_code for _ in range(10)] == [200] * 10
    assert {r.status for r in fake.chat_requests()} == {200}


def test_configure_and_reset(client: httpx.Client, fake: FakeMoonshot) -> None:
    fake.configure(tier=5, rpm_window=1)
    assert (fake.tier, fake.rpm_window) == (5, 1.0)
    fake.configure(token_delay=0)  # leaving tier out leaves it as is
    assert fake.tier == 5
    fake.configure(tier=None)
    assert fake.tier is None
    for bad in ({"tier": 6}, {"tier": True}, {"tier": "0"}, {"rpm_window": 0}, {"rpm_window": "60"}):
        with pytest.raises(ValueError):
            fake.configure(**bad)  # type: ignore[arg-type]
    fake.configure(tier=0)
    fake.reset()
    assert (fake.tier, fake.rpm_window) == (None, 60.0)


def test_tiers_follow_the_reference_table() -> None:
    assert [(t.concurrency, t.rpm, t.tpm) for t in TIERS.values()] == [
        (1, 3, 500_000),
        (50, 200, 2_000_000),
        (100, 500, 3_000_000),
        (200, 5_000, 3_000_000),
        (400, 5_000, 4_000_000),
        (1_000, 10_000, 5_000_000),
    ]


def test_control_endpoint_sets_the_tier(client: httpx.Client, fake: FakeMoonshot) -> None:
    config = fake.base_url.removesuffix("/v1") + "/_fake/config"
    assert httpx.post(config, json={"tier": 0, "rpmWindow": 30}).status_code == 200
    assert [client.post("/chat/completions", json=CHAT).status_code for _ in range(4)][-1] == 429
    recorded = httpx.get(config.removesuffix("config") + "requests").json()["requests"]
    assert [(r["status"], r["errorType"]) for r in recorded][-1] == (429, "rate_limit_reached_error")
    assert client.post("/chat/completions", json=CHAT).json() == rpm_body(30)
    assert httpx.post(config, json={"tier": None}).status_code == 200
    assert client.post("/chat/completions", json=CHAT).status_code == 200
    assert httpx.post(config, json={"tier": 9}).status_code == 400
    assert httpx.post(config, json={"rpmWindow": -1}).status_code == 400


def test_command_line_tier() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "kimi_lsp.fake", "--port", str(port), "--tier", "0", "--rpm-window", "20"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().split()[-1]
            headers = {"Authorization": f"Bearer {KEY}"}
            replies = [httpx.post(base_url + "/chat/completions", headers=headers, json=CHAT) for _ in range(4)]
            assert [r.status_code for r in replies] == [200] * 3 + [429]
            message = replies[-1].json()["error"]["message"]
            assert re.fullmatch(re.escape(ACCOUNT) + r"max RPM: 3, please try again after (19|20) seconds", message)
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0


def test_recorded_json_carries_the_new_fields(client: httpx.Client, fake: FakeMoonshot) -> None:
    client.post("/chat/completions", json=CHAT)
    row = fake.chat_requests()[-1].to_json()
    assert (row["status"], row["errorType"], row["deprecated"]) == (200, None, [])
    json.dumps(row)  # the control API serves it


# ---------------------------------------------------------------------------------------------------- balance

QUOTA_BODY = {
    "error": {
        "type": "exceeded_current_quota_error",
        "message": "You exceeded your current token quota: <org-fake> 338950, please check your account balance",
    }
}


@pytest.mark.parametrize(
    "balance,data",
    [
        (49.58894, {"available_balance": 49.58894, "voucher_balance": 46.58893, "cash_balance": 3.00001}),
        (100, {"available_balance": 100.0, "voucher_balance": 96.99999, "cash_balance": 3.00001}),
        (1.5, {"available_balance": 1.5, "voucher_balance": 0.0, "cash_balance": 1.5}),
        (0, {"available_balance": 0.0, "voucher_balance": 0.0, "cash_balance": 0.0}),
    ],
)
def test_balance_body_follows_the_configured_amount(
    client: httpx.Client, fake: FakeMoonshot, balance: float, data: dict
) -> None:
    fake.configure(balance=balance)
    assert client.get("/users/me/balance").json() == {"code": 0, "data": data, "scode": "0x0", "status": True}


@pytest.mark.parametrize("balance,status", [(0.01, 200), (0, 429), (-3.5, 429)])
def test_chat_needs_a_positive_balance(client: httpx.Client, fake: FakeMoonshot, balance: float, status: int) -> None:
    fake.configure(balance=balance)
    fake.script("overloaded")
    response = client.post("/chat/completions", json=CHAT)
    if status == 429:
        assert (response.status_code, response.json()) == (429, QUOTA_BODY)
        assert client.get("/models").status_code == 200  # /models still answers without balance
        fake.configure(balance=1)
        assert client.post("/chat/completions", json=CHAT).status_code == 429  # the fault was left for this one
    else:
        assert response.json()["error"]["type"] == "engine_overloaded_error"


def test_balance_over_the_control_endpoint_and_the_command_line(client: httpx.Client, fake: FakeMoonshot) -> None:
    config = fake.base_url.removesuffix("/v1") + "/_fake/config"
    assert httpx.post(config, json={"balance": 7.25}).status_code == 200
    assert client.get("/users/me/balance").json()["data"]["available_balance"] == 7.25
    assert httpx.post(config, json={"balance": "lots"}).status_code == 400
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "kimi_lsp.fake", "--port", str(port), "--balance", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().split()[-1]
            headers = {"Authorization": f"Bearer {KEY}"}
            balance = httpx.get(base_url + "/users/me/balance", headers=headers).json()
            assert balance["data"]["available_balance"] == 0
            assert httpx.post(base_url + "/chat/completions", headers=headers, json=CHAT).json() == QUOTA_BODY
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
