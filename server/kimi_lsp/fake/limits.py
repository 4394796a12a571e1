"""Moonshot's rate-limit tiers, as an opt-in mode of the fake (`FakeMoonshot(tier=0)`).

Each valid API key stands for its own account (the reference: limits are per account, shared across keys; the
fake has one key per account). A chat request is counted in flight from when it is accepted until its body is
fully written or its connection drops. Requests refused for concurrency still cost an RPM slot, as the
reference warns ("every retry costs the user an RPM slot"); requests refused for RPM do not, or the
"try again after N seconds" hint could never come true for a client that honours it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from kimi_lsp.fake.faults import ORG, _ApiError


@dataclass(frozen=True)
class Tier:
    concurrency: int
    rpm: int
    tpm: int  # data only: the fake does not enforce tokens per minute


# The reference's "Rate-limit tiers" table.
TIERS: dict[int, Tier] = {
    0: Tier(1, 3, 500_000),
    1: Tier(50, 200, 2_000_000),
    2: Tier(100, 500, 3_000_000),
    3: Tier(200, 5_000, 3_000_000),
    4: Tier(400, 5_000, 4_000_000),
    5: Tier(1_000, 10_000, 5_000_000),
}


def _rate_limited(what: str, wait: int) -> _ApiError:
    return _ApiError(
        429,
        "rate_limit_reached_error",
        f"Your account {ORG} request reached organization {what}, please try again after {wait} seconds",
    )


class RateLimiter:
    """In-flight counts and recent request times per key. Not thread-safe: the fake calls it under its lock."""

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._starts: dict[str, deque[float]] = {}
        self._generation = 0  # bumped by clear(): a request admitted before it must not release a newer one

    def admit(self, key: str, tier: Tier, window: float, now: float) -> int:
        """Count a new chat request in flight (returns the ticket for `release`), or raise Moonshot's 429."""
        starts = self._starts.setdefault(key, deque())
        while starts and starts[0] <= now - window:
            starts.popleft()
        if len(starts) >= tier.rpm:
            wait = max(1, math.ceil(starts[0] + window - now))
            raise _rate_limited(f"max RPM: {tier.rpm}", wait)
        starts.append(now)
        if self._in_flight.get(key, 0) >= tier.concurrency:
            raise _rate_limited(f"max concurrency: {tier.concurrency}", 1)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return self._generation

    def release(self, key: str, ticket: int) -> None:
        if ticket != self._generation:
            return
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    def clear(self) -> None:
        self._generation += 1
        self._in_flight.clear()
        self._starts.clear()
