"""Running requests: by id, deduplicated by what they act on, cancellable from any path."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable
from typing import Any, Optional


class Jobs:
    """Running requests by id, so any path (progress cancel, $/cancelRequest, kimi.cancel, a newer request
    for the same range and action) can stop one."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[asyncio.Task[Any], Hashable]] = {}

    def start(self, request_id: str, key: Hashable, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        for task, k in list(self.running.values()):
            if k == key:
                task.cancel()
        task = asyncio.ensure_future(coro)
        self.running[request_id] = (task, key)
        task.add_done_callback(lambda _t: self.running.pop(request_id, None))
        return task

    def cancel(self, request_id: Optional[str]) -> int:
        targets = [request_id] if request_id else list(self.running)
        n = 0
        for rid in targets:
            entry = self.running.get(rid)
            if entry and not entry[0].done():
                entry[0].cancel()
                n += 1
        return n
