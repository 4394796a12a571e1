"""Moonshot's automatic prefix cache, as the fake reports it in `usage.cached_tokens`.

A request's prompt is read as one string: each message's role and text in order (an image counts by a digest of
its URL, tool calls by their JSON). `cached_tokens` is the longest common prefix, in characters, with any prompt
the same key sent to the same model within `cache_ttl` seconds, as tokens (4 characters a token, the fake
tokenizer's rate), capped at the prompt's tokens, and 0 below a minimum block. Per key and model because the real
cache is per model (a prefix computed by one model is no use to another).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque

from kimi_lsp.fake.prompt import _parts

MIN_CACHED_TOKENS = 256  # real caches work in blocks: a shorter shared prefix is not a hit
MAX_PROMPTS = 32  # prompts kept per key and model: bounds the work of a lookup
_BLOCK = 4096  # characters compared at once (slices compare in C) before narrowing to the character


def prompt_text(messages: list[dict]) -> str:
    """The prompt as the cache sees it: what a model's prefill would read, in order."""
    pieces = []
    for message in messages:
        pieces.append(f"<|{message.get('role')}|>")
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = json.dumps(part.get("image_url"), sort_keys=True)
                pieces.append(f"<|image {hashlib.sha256(url.encode()).hexdigest()[:16]}|>")
        pieces.extend(_parts(content)[0])
        if message.get("tool_calls"):
            pieces.append(json.dumps(message["tool_calls"], sort_keys=True))
        if message.get("tool_call_id"):
            pieces.append(str(message["tool_call_id"]))
    return "\n".join(pieces)


def common_prefix_length(a: str, b: str) -> int:
    end = min(len(a), len(b))
    start = 0
    while start + _BLOCK <= end and a[start : start + _BLOCK] == b[start : start + _BLOCK]:
        start += _BLOCK
    while start < end and a[start] == b[start]:
        start += 1
    return start


class PrefixCache:
    """Recent prompts per (key, model) with their times. Not thread-safe: the fake calls it under its lock."""

    def __init__(self) -> None:
        self._prompts: dict[tuple[str, str], deque[tuple[float, str]]] = {}

    def lookup_and_store(self, key: str, model: str, text: str, prompt_tokens: int, now: float, ttl: float) -> int:
        """The cached tokens of this prompt, which is then remembered for later requests; 0 if ttl is 0."""
        if ttl <= 0:
            return 0
        recent = self._prompts.setdefault((key, model), deque())
        fresh = [old for when, old in recent if when > now - ttl]
        longest = max((common_prefix_length(text, old) for old in fresh), default=0)
        # Keep the newest prompts, this one last (an identical earlier one is only refreshed).
        kept = [(when, old) for when, old in recent if when > now - ttl and old != text]
        recent.clear()
        recent.extend(kept[-(MAX_PROMPTS - 1) :])
        recent.append((now, text))
        tokens = min(prompt_tokens, longest // 4)
        return tokens if tokens >= MIN_CACHED_TOKENS else 0

    def clear(self) -> None:
        self._prompts.clear()
