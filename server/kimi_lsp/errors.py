"""Kimi API failures as typed exceptions with a message a user can act on.

`from_response` maps the HTTP status and body (with or without an `error` object, see moonshot-api.md)
to one of these. Messages never contain the API key: everything a KimiError carries passes through `redact`
(an endpoint may echo the Authorization header); they may quote org/key *ids* from Moonshot's text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional
from urllib.parse import urljoin, urlsplit

from .redact import redact


class KimiError(Exception):
    """Base class: `message` is for the user, `code` is stable (diagnostic codes, tests)."""

    code = "error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
        wait: Optional[float] = None,
        api_message: str = "",
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = redact(request_id) if request_id else request_id
        self.wait = wait
        self.api_message = redact(api_message)

    def __str__(self) -> str:
        return self.message if not self.request_id else f"{self.message} (request id {self.request_id})"


class Unauthorized(KimiError):
    code = "unauthorized"


class NoApiKey(KimiError):
    code = "no-api-key"


class InvalidApiKey(KimiError):
    """The key cannot be sent at all (control characters, spaces, non-ASCII); refused before any request."""

    code = "invalid-api-key"


class ModelNotFound(KimiError):
    code = "model-not-found"

    def __init__(self, message: str, *, model: str = "", successor: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.model = model
        self.successor = successor  # what replaces a retired model: the first quick fix


class PermissionDenied(KimiError):
    code = "permission-denied"


class QuotaExceeded(KimiError):
    code = "quota"


class RateLimited(KimiError):
    code = "rate-limited"
    retryable = True


class Overloaded(KimiError):
    code = "overloaded"
    retryable = True


class ContextTooLong(KimiError):
    code = "context-too-long"


class ContentFiltered(KimiError):
    code = "content-filtered"


class BadRequest(KimiError):
    code = "bad-request"


class ServerError(KimiError):
    code = "server-error"
    retryable = True


class NetworkError(KimiError):
    code = "network"


class TimedOut(KimiError):
    code = "timeout"


class StreamBroken(KimiError):
    """The reply did not arrive whole (no [DONE], a line that is not JSON, a wrong content type)."""

    code = "stream-broken"


class InsecureTransport(KimiError):
    code = "insecure-transport"


class Redirected(KimiError):
    """The base URL answered with a redirect: not followed (the key would go along) and not retried."""

    code = "redirected"


class Refused(KimiError):
    """Refused before any request was sent (too large, no vision, bad input)."""

    code = "refused"


_WAIT = re.compile(r"try again after (\d+(?:\.\d+)?) ?s", re.I)
_LIMIT = re.compile(r"token limit: (\d+) \(requested: (\d+)\)")


def parse_wait(message: str, retry_after: Optional[str] = None) -> Optional[float]:
    """Seconds to wait: the `Retry-After` header where present, else the hint inside Moonshot's message."""
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    m = _WAIT.search(message or "")
    return float(m.group(1)) if m else None


def from_response(
    status: int,
    body: str,
    *,
    base_url: str,
    model: str,
    request_id: Optional[str] = None,
    retry_after: Optional[str] = None,
    location: Optional[str] = None,
) -> KimiError:
    etype, emsg = _error_fields(redact(body))  # before any cut: a truncated key would no longer be recognised
    kw: dict[str, Any] = {"status": status, "request_id": request_id, "api_message": emsg}
    if 300 <= status < 400:
        return Redirected(
            f"kimi.baseUrl {base_url} redirects to {_host(base_url, location)} (HTTP {status}); point "
            "it at the API itself. The redirect was not followed, so the key was not sent there.",
            **kw,
        )
    shown = f": {emsg}" if emsg else ""
    if status == 401:
        return Unauthorized(
            f"Kimi rejected the API key at {base_url} ({emsg or 'HTTP 401'}). International (api.moonshot.ai) and "
            "China (api.moonshot.cn) keys are not interchangeable: check the key and the kimi.region setting.",
            **kw,
        )
    if etype == "exceeded_current_quota_error" or "quota" in emsg.lower() or "suspended" in emsg.lower():
        return QuotaExceeded(
            f"Your Moonshot account is out of balance or suspended{shown}. Top up the account "
            "(retrying will not help).",
            **kw,
        )
    if status == 404 and (etype == "resource_not_found_error" or "model" in emsg.lower()):
        return ModelNotFound(
            f"Model '{model}' was not found at {base_url}, or this account may not use it{shown}.", model=model, **kw
        )
    if status == 404:
        return BadRequest(
            f"{base_url} does not look like a Moonshot API endpoint (HTTP 404{shown}). Check kimi.baseUrl.", **kw
        )
    if status == 403:
        return PermissionDenied(f"Moonshot refused access{shown}.", **kw)
    if status == 429 and etype == "engine_overloaded_error":
        return Overloaded(f"Kimi is overloaded right now{shown}. Try again in a moment.", **kw)
    if status == 429:
        wait = parse_wait(emsg, retry_after)
        when = f" Try again in {wait:g} s." if wait is not None else " Try again shortly."
        return RateLimited(f"Rate limit reached{shown}.{when}", wait=wait, **kw)
    if etype == "content_filter":
        return ContentFiltered(f"Moonshot's content filter rejected the request{shown}.", **kw)
    if status == 400 and (found := _LIMIT.search(emsg)):
        limit, requested = found.groups()
        return ContextTooLong(
            f"The request is too large for {model}: {requested} tokens requested, the window is "
            f"{limit}. Select less code, lower kimi.contextLines or kimi.maxTokens, or use a model "
            "with a larger window.",
            **kw,
        )
    if 400 <= status < 500:
        return BadRequest(f"Kimi rejected the request (HTTP {status}{shown}).", **kw)
    return ServerError(f"Kimi had a server error (HTTP {status}{shown}). Try again.", **kw)


def _host(base_url: str, location: Optional[str]) -> str:
    """host[:port] of a Location header (relative to the base URL); never its path or query."""
    try:
        target = urlsplit(urljoin(base_url + "/", location or ""))
        host, port = target.hostname, target.port
    except ValueError:
        return "an unreadable location"
    if not host:
        return "an unknown location"
    return f"{host}:{port}" if port is not None else host


def _error_fields(body: str) -> tuple[str, str]:
    """(type, message) from either body shape; plain text bodies become the message."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return "", (body or "").strip()[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("type") or ""), str(err.get("message") or "")
        # The non-OpenAI shape: {"code":5,"error":"url.not_found","message":"…"}
        return str(err or ""), str(data.get("message") or "")
    return "", str(data)[:300]
