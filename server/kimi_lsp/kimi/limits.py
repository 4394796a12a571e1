"""Moonshot's per-account rate limits: chat streams queue for them instead of failing.

Moonshot limits each account (all its keys and models together) by tier: Tier0 allows 1 request in flight and 3
a minute. We cannot see the account, so an `AccountGate` stands for (base URL, a salted hash of the key; the key
itself is never kept) and lives for the life of the server in the `ClientPool`. Each chat stream takes a `Slot`
from its gate before it is sent and gives it back when it ends, fails or is cancelled.

Nothing is known at first: requests go out as they come. A 429 teaches the gate (`rejected`):

- "max organization concurrency: N": the cap becomes the number of other requests in flight that the API had
  accepted (HTTP 200) at that moment, at least 1 and at most N. The refused request goes back into the queue in
  its place and is sent again once the hint ("try again after N seconds") has passed and a slot is free.
- "max RPM: N": at most N sends in any WINDOW seconds (our own sends; a send refused for concurrency counts, one
  refused for RPM does not, as at Moonshot). The request goes back into the queue and waits for the hint and for
  room in the window. A send refused for its key (401) reached no account and does not count either. A stated
  RPM that more sends than it allows got through in our window is not learned (that window is not Moonshot's):
  only the hint is waited for.

Waiters are admitted strictly in arrival order (`ticket()`; a request put back keeps its place). A learned limit
is forgotten RELAX_AFTER seconds after the last 429 that taught it, and whenever kimi.maxConcurrentRequests
changes (the account's tier may have changed): the next 429 teaches it again. kimi.maxConcurrentRequests caps
the requests in flight by hand, on top of what was learned.

The gate knows no deadlines: the caller bounds the wait (asyncio.timeout), and a waiter that is cancelled leaves
the queue at once, the ones behind it moving up.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Optional

log = logging.getLogger(__name__)

WINDOW = float(os.environ.get("KIMI_LSP_RPM_WINDOW", "60"))  # seconds of Moonshot's RPM window; tests shorten it
RELAX_AFTER = 180.0  # seconds without a 429 of its kind after which a learned limit is forgotten

Kind = Literal["concurrency", "rpm", "other"]
_CONCURRENCY = re.compile(r"concurrency\b\s*:?\s*(\d+)?", re.I)
_RPM = re.compile(r"\bRPM\b\s*:?\s*(\d+)?")
_SALT = os.urandom(16)  # per process: an account id means nothing outside this server


def account_id(api_key: str) -> str:
    """A salted hash that tells keys apart without keeping them."""
    return hashlib.blake2b(api_key.encode("utf-8", "replace"), key=_SALT, digest_size=16).hexdigest()


def classify(message: str) -> tuple[Kind, Optional[int]]:
    """Which limit a `rate_limit_reached_error` names, and the number it states (None when it states none)."""
    if m := _CONCURRENCY.search(message or ""):
        return "concurrency", int(m.group(1)) if m.group(1) else None
    if m := _RPM.search(message or ""):
        return "rpm", int(m.group(1)) if m.group(1) else None
    return "other", None


class Slot:
    """One admitted chat stream. `accept()` once the API answers 200; `release()` (idempotent) when it ends."""

    __slots__ = ("_gate", "accepted", "released", "sent_at", "waited")

    def __init__(self, gate: AccountGate, sent_at: float, waited: bool) -> None:
        self._gate = gate
        self.accepted = False
        self.released = False
        self.waited = waited  # it was queued (and told so) before it was admitted
        self.sent_at = sent_at

    def accept(self) -> None:
        self.accepted = True

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._gate._release(self)


@dataclass(eq=False)
class _Waiter:
    ticket: int
    not_before: float
    reason: str
    future: asyncio.Future[Slot]
    status: Optional[Callable[[str], None]]
    told: str = ""


@dataclass
class _Learned:
    value: Optional[int] = None
    at: float = 0.0


class AccountGate:
    """The queue of one account's chat streams: an in-flight count under a cap, sends under an RPM."""

    def __init__(
        self,
        *,
        window: Optional[float] = None,
        relax_after: float = RELAX_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = WINDOW if window is None else window
        self._expiry = self.window * 1.02 + 0.05  # a send leaves our window a little after it leaves Moonshot's
        self.relax_after = relax_after
        self._clock = clock
        self._queue: list[_Waiter] = []  # sorted by ticket
        self._running: set[Slot] = set()
        self._sends: deque[tuple[float, Slot]] = deque()  # (time, slot) of the sends in the last window
        self._cap = _Learned()
        self._rpm = _Learned()
        self._manual: Optional[int] = None
        self._tickets = itertools.count()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._paused_until = 0.0  # background requests (completions) stay off until then, after a 429

    # -- what tests and messages read ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def cap(self) -> Optional[int]:
        """The cap on requests in flight now: the learned one, lowered by kimi.maxConcurrentRequests."""
        self._relax(self._clock())
        caps = [c for c in (self._cap.value, self._manual) if c is not None]
        return min(caps) if caps else None

    def rpm(self) -> Optional[int]:
        self._relax(self._clock())
        return self._rpm.value

    def describe(self) -> str:
        """The limits known, for messages: "1 request at a time, 3 a minute"."""
        cap, rpm = self.cap(), self.rpm()
        parts = []
        if cap is not None:
            parts.append(f"{cap} request{'s' if cap != 1 else ''} at a time")
        if rpm is not None:
            parts.append(f"{rpm} a minute")
        return ", ".join(parts) or "limits not known yet"

    # -- the caller's side -----------------------------------------------------------------------------------

    def ticket(self) -> int:
        """A place in line, taken once per request when it arrives and kept through every retry."""
        return next(self._tickets)

    def set_manual(self, cap: Optional[int]) -> None:
        """kimi.maxConcurrentRequests; a change forgets what was learned."""
        if cap != self._manual:
            self._manual = cap
            self._cap, self._rpm = _Learned(), _Learned()
            self._pump()

    async def acquire(
        self,
        ticket: int,
        *,
        not_before: float = 0.0,
        reason: str = "rate limit",
        status: Optional[Callable[[str], None]] = None,
    ) -> Slot:
        """Waits in line for a slot: until `not_before` (the clock's time), a free slot and room in the RPM
        window, behind every older ticket. `status` hears where the request stands while it waits; `reason` is
        what it says a wait for `not_before` is for."""
        waiter = _Waiter(ticket, not_before, reason, asyncio.get_running_loop().create_future(), status)
        bisect.insort(self._queue, waiter, key=lambda w: w.ticket)
        self._pump()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._queue:
                self._queue.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()  # admitted in the same turn as it was cancelled
            self._pump()
            raise

    def rejected(self, slot: Slot, kind: Kind, stated: Optional[int]) -> None:
        """A 429 for `slot` (still held): learn the limit it names. The caller releases the slot."""
        now = self._clock()
        if kind == "concurrency":
            accepted = sum(1 for s in self._running if s is not slot and s.accepted and not s.released)
            cap = max(1, accepted if stated is None else min(stated, accepted))
            if cap != self._cap.value:
                log.info("learned the account's concurrency: %d in flight (stated: %s)", cap, stated)
            self._cap = _Learned(cap, now)
        elif kind == "rpm":
            self._forget_send(slot)  # Moonshot does not count a send refused for RPM
            self._prune(now)
            accepted = sum(1 for _, s in self._sends if s.accepted)
            if stated is not None and accepted > stated:
                # More got through in our window than the limit allows: its window is not ours (or the text is
                # wrong). Throttling to it would stall every request for nothing; the hint alone is waited for.
                log.info("not learning RPM %d: %d were accepted in our window", stated, accepted)
                return
            rpm = stated if stated is not None else max(1, len(self._sends))
            if rpm != self._rpm.value:
                log.info("learned the account's requests per minute: %d", rpm)
            self._rpm = _Learned(rpm, now)

    # -- background requests (completions): never queued, never in an explicit action's way ------------------

    def pause_background(self, seconds: float) -> None:
        """A rate-limit 429 came: background requests stay off until its wait has passed."""
        self._paused_until = max(self._paused_until, self._clock() + max(seconds, 1.0))

    def background_refusal(self) -> Optional[str]:
        """Why a background request may not go now (said in status), or None. It never waits in line, never takes
        the last free slot of a known cap, and stays off while a rate-limit wait runs."""
        now = self._clock()
        paused = self._paused_until - now
        if paused > 0:
            return f"completions paused: rate limit, {paused:.0f} s"
        if self._queue:
            return "completions paused: requests are queued for the rate limit"
        cap = self.cap()
        if cap is not None and len(self._running) >= cap - 1:  # the last slot is kept for what the user asked
            return f"completions paused: the account allows {cap} request{'s' if cap != 1 else ''} at a time"
        rpm = self._rpm.value
        if rpm is not None:
            self._prune(now)
            if len(self._sends) >= rpm - 1:
                return f"completions paused: the account allows {rpm} requests a minute"
        return None

    def uncount(self, slot: Slot) -> None:
        """The send did not reach an account (a rejected key: HTTP 401), so it costs none of its RPM."""
        self._forget_send(slot)

    # -- inside ---------------------------------------------------------------------------------------------------

    def _release(self, slot: Slot) -> None:
        self._running.discard(slot)
        self._pump()

    def _forget_send(self, slot: Slot) -> None:
        for i, (_, s) in enumerate(self._sends):
            if s is slot:
                del self._sends[i]
                return

    def _relax(self, now: float) -> None:
        for name in ("_cap", "_rpm"):
            learned: _Learned = getattr(self, name)
            if learned.value is not None and now - learned.at >= self.relax_after:
                log.info("forgetting the learned %s limit (%d) after a quiet while", name[1:], learned.value)
                setattr(self, name, _Learned())

    def _prune(self, now: float) -> None:
        while self._sends and self._sends[0][0] <= now - self._expiry:
            self._sends.popleft()

    def _blocked(self, waiter: _Waiter, now: float) -> tuple[bool, Optional[float]]:
        """(whether `waiter`, at the head of the line, must wait; the time it may go if that is known)."""
        whens = []
        if waiter.not_before > now:
            whens.append(waiter.not_before)
        rpm = self._rpm.value
        if rpm is not None and len(self._sends) >= rpm:
            whens.append(self._sends[len(self._sends) - rpm][0] + self._expiry)
        cap = self.cap()
        full = cap is not None and len(self._running) >= cap
        return bool(whens) or full, max(whens) if whens else None

    def _pump(self) -> None:
        """Admits waiters from the head of the line while they may go; tells the rest where they stand."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        self._relax(now)
        self._prune(now)
        wake: Optional[float] = None
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled, and its task has not run its clean-up yet
                self._queue.pop(0)
                continue
            blocked, wake = self._blocked(head, now)
            if blocked:
                break
            self._queue.pop(0)
            slot = Slot(self, now, waited=bool(head.told))
            self._running.add(slot)
            self._sends.append((now, slot))
            head.future.set_result(slot)
        for index, waiter in enumerate(self._queue):
            self._tell(waiter, self._where(waiter, index, now, wake))
        if self._queue and wake is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, wake - now), self._pump)

    def _where(self, waiter: _Waiter, index: int, now: float, head_wake: Optional[float]) -> str:
        when = head_wake if index == 0 else (waiter.not_before if waiter.not_before > now else None)
        reason = waiter.reason if waiter.not_before > now else "rate limit"
        ahead = f"{index} request{'s' if index != 1 else ''} ahead"
        if when is not None:
            return f"queued: {reason}, retrying in {max(1, math.ceil(when - now - 1e-6))} s" + (
                f" ({ahead})" if index else ""
            )
        if index:
            return f"queued: {ahead} (rate limit)"
        return f"queued: next, {len(self._running)} running (rate limit: {self.cap()} at a time)"

    @staticmethod
    def _tell(waiter: _Waiter, text: str) -> None:
        if text == waiter.told:
            return
        waiter.told = text
        if waiter.status is not None:
            try:
                waiter.status(text)
            except Exception:  # one request's display must not stall the line
                log.exception("status callback failed")
