"""The API key: OS keychain through keyring (service `kimi-lsp`, one entry per region), then MOONSHOT_API_KEY.

keyring talks to D-Bus or files, so every call runs in a worker thread, never on the event loop.
The key itself is never logged; errors name the backend, not the secret. Every key the store hands out is
stripped and registered with `redact`, so it is taken out of anything that leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import unicodedata
from typing import Any, Optional

from kimi_lsp import errors, redact

log = logging.getLogger(__name__)

SERVICE = "kimi-lsp"
ENV_VAR = "MOONSHOT_API_KEY"


class KeychainUnavailable(Exception):
    pass


def clean_key(raw: str) -> str:
    """The key as it can go into an `Authorization` header: surrounding whitespace (a pasted newline, a CR from
    a Windows-edited env file) is dropped; anything else that is not printable ASCII is refused with a message
    that names the problem and its position, never the key."""
    key = raw.strip()
    if not key:
        raise errors.InvalidApiKey("The API key is empty.")
    for i, ch in enumerate(key, 1):
        if not ch.isascii():
            name = unicodedata.name(ch, "unnamed")
            raise errors.InvalidApiKey(
                f"The API key contains characters that cannot be sent in an HTTP header (character {i} is "
                f"U+{ord(ch):04X} {name}). Copy the key again from the Moonshot console as plain text."
            )
        if ch == " ":
            raise errors.InvalidApiKey(
                f"The API key contains a space (character {i}); a key has none. "
                "Copy it again from the Moonshot console."
            )
        if not ch.isprintable():
            raise errors.InvalidApiKey(
                f"The API key contains a control character (character {i}, "
                f"U+{ord(ch):04X}); copy it again from the Moonshot console."
            )
    return key


def _usable(key: str) -> str:
    """Registered as it came and as it is used; a key that cannot be used is passed on for the client to refuse
    with its message (stripped only), so the user hears why."""
    redact.register(key)
    try:
        return clean_key(key)
    except errors.InvalidApiKey:
        return key.strip()


def _entry(region: str) -> str:
    return f"api-key-{region}"


def _keyring() -> Any:
    import keyring  # imported lazily: backend discovery is slow and not needed at start-up

    return keyring


def _get_sync(region: str) -> Optional[str]:
    try:
        key: Optional[str] = _keyring().get_password(SERVICE, _entry(region))
        return key
    except Exception as exc:  # no backend, locked keychain, D-Bus trouble: fall back to the environment
        log.debug("keychain read failed: %s", type(exc).__name__)
        return None


def _set_sync(region: str, key: str) -> None:
    kr = _keyring()
    try:
        kr.set_password(SERVICE, _entry(region), key)
    except Exception as exc:
        raise KeychainUnavailable(_unavailable(exc)) from None


def _clear_sync(region: str) -> bool:
    kr = _keyring()
    try:
        kr.delete_password(SERVICE, _entry(region))
        return True
    except kr.errors.PasswordDeleteError:
        return False
    except Exception as exc:
        raise KeychainUnavailable(_unavailable(exc)) from None


def _unavailable(exc: Exception) -> str:
    name = type(exc).__name__
    return (
        f"No usable OS keychain ({name}). On a headless machine set the key in the editor's environment instead: "
        f"export {ENV_VAR}=... before starting the editor."
    )


class KeyStore:
    """Reads the key for a region once, caches it in memory, and forgets it on set/clear."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Optional[str], Optional[str]]] = {}

    async def get(self, region: str) -> tuple[Optional[str], Optional[str]]:
        """(key, source) where source is 'keychain', 'environment' or None."""
        if region not in self._cache:
            key = await asyncio.to_thread(_get_sync, region)
            if key:
                self._cache[region] = (_usable(key), "keychain")
            elif os.environ.get(ENV_VAR):
                self._cache[region] = (_usable(os.environ[ENV_VAR]), "environment")
            else:
                return None, None  # not cached: a key set outside the server is picked up next time
        return self._cache[region]

    async def set(self, region: str, key: str) -> None:
        redact.register(key)
        key = clean_key(key)
        await asyncio.to_thread(_set_sync, region, key)
        self._cache[region] = (key, "keychain")

    async def clear(self, region: str) -> bool:
        self._cache.pop(region, None)
        return await asyncio.to_thread(_clear_sync, region)

    def remember(self, region: str, key: str) -> None:
        """Session-only key, for machines with no keychain."""
        redact.register(key)
        self._cache[region] = (clean_key(key), "session")

    def forget(self) -> None:
        self._cache.clear()
