"""The account gate (kimi.limits) on its own: arrival order, learning concurrency and RPM from 429s, the manual cap,
waiters cancelled or timed out at every point, and no slot ever leaked."""

from __future__ import annotations

import asyncio
import time

import pytest

from kimi_lsp.kimi.http import ClientPool
from kimi_lsp.kimi.limits import AccountGate, Slot, account_id, classify
from kimi_lsp.settings import Settings

ORG = "Your account org-fake<ak-fake> request reached organization"


@pytest.mark.parametrize(
    "message,kind,stated",
    [
        (f"{ORG} max concurrency: 1, please try again after 1 seconds", "concurrency", 1),
        (
            "Your account org-x<ak-y> request reached max organization concurrency: 3, please try again",
            "concurrency",
            3,
        ),
        (f"{ORG} max RPM: 3, please try again after 20 seconds", "rpm", 3),
        (f"{ORG} max RPM, please try again later", "rpm", None),
        (f"{ORG} TPM rate limit, current:600000, limit:500000", "other", None),
        ("The engine is currently overloaded, please try again later", "other", None),
        ("", "other", None),
    ],
)
def test_classify(message, kind, stated):
    assert classify(message) == (kind, stated)


def test_account_ids_tell_keys_apart_without_keeping_them():
    a, b = account_id("sk-one-secret"), account_id("sk-two-secret")
    assert a != b and a == account_id("sk-one-secret") and "secret" not in a


async def test_pool_shares_one_gate_per_account():
    pool = ClientPool()
    s = Settings(base_url="http://127.0.0.1:9/v1")
    gate = pool.gate(s, "sk-one")
    assert pool.gate(s, " sk-one\n") is gate  # the key as sent
    assert pool.gate(Settings(base_url="http://127.0.0.1:9/v1/", model="moonshot-v1-8k"), "sk-one") is gate
    assert pool.gate(s, "sk-two") is not gate
    assert pool.gate(Settings(base_url="http://127.0.0.1:8/v1"), "sk-one") is not gate
    assert not any("sk-one" in part for account in pool._gates for part in account)


class Line:
    """Requests in line at one gate, each a task that records when it got its slot and what it was told."""

    def __init__(self, gate: AccountGate) -> None:
        self.gate = gate
        self.admitted: list[str] = []
        self.told: dict[str, list[str]] = {}
        self.slots: dict[str, Slot] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def join(self, name: str, ticket: int | None = None, **kw) -> asyncio.Task:
        ticket = self.gate.ticket() if ticket is None else ticket
        self.told[name] = []

        async def run() -> Slot:
            slot = await self.gate.acquire(ticket, status=self.told[name].append, **kw)
            self.admitted.append(name)
            self.slots[name] = slot
            return slot

        self.tasks[name] = task = asyncio.ensure_future(run())
        return task

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


async def test_waiters_go_in_arrival_order():
    gate = AccountGate()
    gate.set_manual(1)
    line = Line(gate)
    for name in "abcde":
        line.join(name)
    await line.settle()
    assert line.admitted == ["a"] and gate.queued == 4
    assert line.told["b"] == ["queued: next, 1 running (rate limit: 1 at a time)"]
    assert line.told["e"] == ["queued: 3 requests ahead (rate limit)"]
    for expected in ["b", "c", "d", "e"]:
        line.slots[line.admitted[-1]].release()
        await line.settle()
        assert line.admitted[-1] == expected
    line.slots["e"].release()
    assert gate.in_flight == 0 and gate.queued == 0
    assert line.told["e"][-1] == "queued: next, 1 running (rate limit: 1 at a time)"  # it moved up


async def test_nothing_known_nothing_waits():
    gate = AccountGate()
    line = Line(gate)
    for name in "abc":
        line.join(name)
    await line.settle()
    assert line.admitted == ["a", "b", "c"] and gate.in_flight == 3
    assert all(not told for told in line.told.values()) and not any(s.waited for s in line.slots.values())


@pytest.mark.parametrize(
    "accepted,unaccepted,stated,cap",
    [
        (0, 0, 1, 1),  # tier 0: alone and refused: one at a time
        (1, 0, 1, 1),
        (0, 2, None, 1),  # the others were not accepted yet: they do not count
        (2, 1, None, 2),  # what had succeeded, not counting this one
        (5, 0, 3, 3),  # never above what the message states
        (2, 0, 50, 2),  # the account's other users hold the rest
    ],
)
async def test_concurrency_is_learned_from_what_succeeded(accepted, unaccepted, stated, cap):
    gate = AccountGate()
    slots = [await gate.acquire(gate.ticket()) for _ in range(accepted + unaccepted)]
    for slot in slots[:accepted]:
        slot.accept()
    refused = await gate.acquire(gate.ticket())
    gate.rejected(refused, "concurrency", stated)
    refused.release()
    assert gate.cap() == cap and gate.in_flight == accepted + unaccepted
    assert gate.describe().startswith(f"{cap} request")


async def test_a_refused_request_keeps_its_place():
    """a runs; b and c were sent at once and refused; d arrives later: b, c, d, in that order, whoever asks
    again first."""
    gate = AccountGate()
    line = Line(gate)
    a = await gate.acquire(gate.ticket())
    a.accept()
    tb, tc = gate.ticket(), gate.ticket()
    b, c = await gate.acquire(tb), await gate.acquire(tc)
    for slot in (c, b):  # c's 429 arrives first
        gate.rejected(slot, "concurrency", 1)
        slot.release()
    assert gate.cap() == 1
    line.join("d")
    line.join("c", tc)  # c asks again before b
    line.join("b", tb)
    await line.settle()
    assert line.admitted == [] and gate.queued == 3
    for expected in "bcd":
        (a if expected == "b" else line.slots[line.admitted[-1]]).release()
        await line.settle()
        assert line.admitted[-1] == expected


async def test_the_hint_is_waited_for_and_told():
    gate = AccountGate()
    line = Line(gate)
    began = time.monotonic()
    task = line.join("a", not_before=began + 0.3)
    await line.settle()
    assert line.told["a"] == ["queued: rate limit, retrying in 1 s"] and not task.done()
    slot = await asyncio.wait_for(task, 5)
    assert time.monotonic() - began >= 0.29 and slot.waited
    slot.release()
    line.join("b", not_before=time.monotonic() + 0.2, reason="Kimi is overloaded")
    await line.settle()
    assert line.told["b"] == ["queued: Kimi is overloaded, retrying in 1 s"]
    await asyncio.wait_for(line.tasks["b"], 5)


async def test_rpm_is_learned_and_the_window_waited_for():
    gate = AccountGate(window=0.4)
    line = Line(gate)
    first = [await gate.acquire(gate.ticket()) for _ in range(3)]
    gate.rejected(first[2], "rpm", 2)  # the third send was one too many; it did not count
    for slot in first:
        slot.release()
    assert gate.rpm() == 2 and gate.cap() is None
    began = time.monotonic()
    line.join("a")
    await line.settle()
    assert line.admitted == [] and line.told["a"] == ["queued: rate limit, retrying in 1 s"]
    await asyncio.wait_for(line.tasks["a"], 5)
    assert time.monotonic() - began >= 0.3
    line.join("b")  # the first two sends have left the window: a and b fill it
    line.join("c")
    await line.settle()
    assert line.admitted == ["a", "b"] and line.told["c"] == ["queued: rate limit, retrying in 1 s"]
    await asyncio.wait_for(line.tasks["c"], 5)
    assert time.monotonic() - began >= 0.7
    assert gate.describe() == "2 a minute"


async def test_rpm_without_a_number_counts_the_window():
    gate = AccountGate(window=10)
    slots = [await gate.acquire(gate.ticket()) for _ in range(4)]
    gate.rejected(slots[3], "rpm", None)
    assert gate.rpm() == 3


async def test_manual_cap_and_what_a_change_of_it_forgets():
    gate = AccountGate()
    gate.set_manual(2)
    line = Line(gate)
    for name in "abc":
        line.join(name)
    await line.settle()
    assert line.admitted == ["a", "b"] and line.told["c"] == ["queued: next, 2 running (rate limit: 2 at a time)"]
    line.slots["a"].accept()
    gate.rejected(line.slots["b"], "concurrency", None)  # learned 1, under the manual 2
    assert gate.cap() == 1
    line.slots["b"].release()
    await line.settle()
    assert gate.queued == 1  # a still runs: at the learned cap
    gate.set_manual(3)  # a new setting: the learned cap is forgotten, the manual one applies
    await line.settle()
    assert line.admitted == ["a", "b", "c"] and gate.cap() == 3
    gate.set_manual(None)
    assert gate.cap() is None


async def test_a_learned_limit_relaxes():
    gate = AccountGate(relax_after=0.2)
    slot = await gate.acquire(gate.ticket())
    gate.rejected(slot, "concurrency", 1)
    gate.rejected(slot, "rpm", 3)
    slot.release()
    assert gate.cap() == 1 and gate.rpm() == 3
    await asyncio.sleep(0.25)
    assert gate.cap() is None and gate.rpm() is None


async def test_cancelling_a_waiter_removes_it_and_the_rest_move_up():
    gate = AccountGate()
    gate.set_manual(1)
    line = Line(gate)
    for name in "abcd":
        line.join(name)
    await line.settle()
    assert line.told["d"] == ["queued: 2 requests ahead (rate limit)"]
    line.tasks["b"].cancel()
    await line.settle()
    assert line.tasks["b"].cancelled() and gate.queued == 2
    assert line.told["c"][-1] == "queued: next, 1 running (rate limit: 1 at a time)"
    assert line.told["d"][-1] == "queued: 1 request ahead (rate limit)"
    line.slots["a"].release()
    await line.settle()
    line.slots["c"].release()
    await line.settle()
    assert line.admitted == ["a", "c", "d"]
    line.slots["d"].release()
    assert gate.in_flight == 0 and gate.queued == 0


async def test_cancelled_in_the_turn_it_was_admitted_gives_the_slot_back():
    """The slot is granted (the future resolved) and the task is cancelled before it runs again."""
    gate = AccountGate()
    gate.set_manual(1)
    line = Line(gate)
    line.join("a")
    line.join("b")
    line.join("c")
    await line.settle()
    line.slots["a"].release()  # b's future now holds a slot ...
    line.tasks["b"].cancel()  # ... and b is cancelled before it can take it
    await line.settle()
    assert line.tasks["b"].cancelled() and line.admitted == ["a", "c"] and gate.in_flight == 1
    line.slots["c"].release()
    assert gate.in_flight == 0 and gate.queued == 0


async def test_cancelled_while_waiting_for_the_hint_or_the_window():
    gate = AccountGate(window=30)
    line = Line(gate)
    line.join("a", not_before=time.monotonic() + 30)
    line.join("b")
    await line.settle()
    assert gate.queued == 2 and line.told["b"] == ["queued: 1 request ahead (rate limit)"]
    line.tasks["a"].cancel()  # b no longer waits behind a's hint
    await asyncio.wait_for(line.tasks["b"], 5)
    slot = line.slots["b"]
    gate.rejected(slot, "rpm", 1)
    slot.release()
    other = await gate.acquire(gate.ticket())  # the window had room again: b's send did not count
    line.join("c")
    await line.settle()
    assert gate.queued == 1
    line.tasks["c"].cancel()
    await line.settle()
    other.release()
    assert gate.queued == 0 and gate.in_flight == 0 and gate._timer is None


async def test_a_time_out_while_queued_leaves_the_line():
    gate = AccountGate()
    gate.set_manual(1)
    held = await gate.acquire(gate.ticket())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await gate.acquire(gate.ticket())
    assert gate.queued == 0 and gate.in_flight == 1
    held.release()
    held.release()  # idempotent
    assert gate.in_flight == 0
    slot = await asyncio.wait_for(gate.acquire(gate.ticket()), 1)
    assert not slot.waited


async def test_a_failing_status_callback_does_not_stall_the_line():
    gate = AccountGate()
    gate.set_manual(1)
    held = await gate.acquire(gate.ticket())

    def broken(text: str) -> None:
        raise RuntimeError("display gone")

    waiting = asyncio.ensure_future(gate.acquire(gate.ticket(), status=broken))
    await asyncio.sleep(0)
    held.release()
    (await asyncio.wait_for(waiting, 1)).release()
    assert gate.in_flight == 0


async def test_a_send_refused_for_its_key_costs_no_rpm():
    gate = AccountGate(window=30)
    bad = await gate.acquire(gate.ticket())
    gate.uncount(bad)  # 401: no account was reached
    bad.release()
    ok = await gate.acquire(gate.ticket())
    over = await gate.acquire(gate.ticket())
    gate.rejected(over, "rpm", 2)
    over.release()
    ok.release()
    slot = await asyncio.wait_for(gate.acquire(gate.ticket()), 1)  # one send in the window: room for another
    slot.release()


async def test_a_stated_rpm_that_more_got_through_than_is_not_learned():
    """The fake's scripted fault says "max RPM: 3" after ten answers in the window: that window is not ours."""
    gate = AccountGate(window=30)
    for _ in range(10):
        slot = await gate.acquire(gate.ticket())
        slot.accept()
        slot.release()
    over = await gate.acquire(gate.ticket())
    gate.rejected(over, "rpm", 3)
    over.release()
    assert gate.rpm() is None
    slot = await asyncio.wait_for(gate.acquire(gate.ticket()), 1)
    slot.release()


@pytest.mark.parametrize(
    "manual,running,paused,refused",
    [
        (None, 0, 0.0, None),  # nothing known: completions go
        (3, 1, 0.0, None),  # a free slot beyond the last one
        (3, 2, 0.0, "3 requests at a time"),  # only the last slot is free: it is kept for the user
        (1, 0, 0.0, "1 request at a time"),  # tier 0: completions never take the only slot
        (None, 0, 5.0, "rate limit"),  # after a 429, until its wait has passed
    ],
)
async def test_background_requests_never_stand_in_the_users_way(manual, running, paused, refused):
    now = [100.0]
    gate = AccountGate(clock=lambda: now[0])
    gate.set_manual(manual)
    slots = [await gate.acquire(gate.ticket()) for _ in range(running)]
    if paused:
        gate.pause_background(paused)
    why = gate.background_refusal()
    assert (why is None) == (refused is None) and (refused or "") in (why or "")
    if paused:
        now[0] += paused + 0.1
        assert gate.background_refusal() is None
    for slot in slots:
        slot.release()
