"""The Kimi HTTP client: one pooled `httpx.AsyncClient` per (base URL, proxy, CA), SSE via httpx-sse.

`KimiClient` sends, retries what may be
retried, and turns every failure into a `KimiError`. Chat streams go through the account's `limits.AccountGate`
(one per base URL and key, for the pool's life): a 429 for concurrency or requests per minute puts the request back
in line, in its place, until the request's time-out, instead of failing it. The key travels per request in a header, so a new
key needs no new connection pool, and it is only ever sent to the configured base URL: redirects are not
followed, and a loopback base URL never goes through a proxy. Every request body passes through `redact` on
its way out, so a key that found its way into a prompt or a tool result does not reach the model.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Optional
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource

from kimi_lsp import __version__, errors, redact
from kimi_lsp.kimi import limits
from kimi_lsp.kimi.keys import clean_key
from kimi_lsp.kimi.sse import ChunkReader, Reply
from kimi_lsp.settings import Settings

log = logging.getLogger(__name__)

MAX_RETRIES = 2  # overload, 5xx, tokens-per-minute; a concurrency or RPM 429 is bounded by the time-out instead
RETRY_BASE = float(os.environ.get("KIMI_LSP_RETRY_BASE", "1.0"))  # seconds; tests shorten it
MAX_WAIT = 20.0  # never sleep longer than this on an overload/TPM hint; report instead
WAITING = "waiting for the first token"  # the status once a queued request is finally sent


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientPool:
    """Reuses one AsyncClient per network configuration, and one rate-limit gate per account, for the life of the
    server."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, Optional[str], Optional[str]], httpx.AsyncClient] = {}
        self._gates: dict[tuple[str, str], limits.AccountGate] = {}

    def gate(self, settings: Settings, api_key: str) -> limits.AccountGate:
        """The account's gate: keyed by base URL and a salted hash of the key (Moonshot's limits are per account,
        which we cannot see; the key itself is not kept)."""
        account = (settings.effective_base_url.rstrip("/"), limits.account_id(clean_key(api_key)))
        gate = self._gates.get(account)
        if gate is None:
            gate = self._gates[account] = limits.AccountGate()
        gate.set_manual(settings.max_concurrent_requests)
        return gate

    def get(self, settings: Settings) -> httpx.AsyncClient:
        key = (settings.effective_base_url, settings.proxy, settings.ca_bundle)
        client = self._clients.get(key)
        if client is None or client.is_closed:
            client = self._clients[key] = _new_client(settings)
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _new_client(settings: Settings) -> httpx.AsyncClient:
    verify: Any = True
    if settings.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise errors.NetworkError(f"kimi.caBundle {settings.ca_bundle!r} could not be loaded: {exc}") from None
    # Loopback (a local fake or gateway) is always reached directly: a proxy would see a plain-HTTP key.
    local = is_loopback(settings.effective_base_url)
    return httpx.AsyncClient(
        base_url=settings.effective_base_url,
        proxy=None if local else settings.proxy,  # None: HTTP(S)_PROXY / NO_PROXY apply, unless loopback
        trust_env=not local,
        verify=verify,
        timeout=httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        headers={"User-Agent": f"kimi-lsp/{__version__}"},
    )


class KimiClient:
    """One request context: settings + key over a pooled connection."""

    def __init__(self, pool: ClientPool, settings: Settings, api_key: Optional[str]) -> None:
        self.settings = settings
        self.base_url = settings.effective_base_url
        self._key = api_key
        self._pool = pool

    def _headers(self) -> dict[str, str]:
        if not self._key:
            raise errors.NoApiKey(
                "No Moonshot API key is set. Run the 'kimi.setApiKey' command (your editor's 'Kimi: Set API key'), "
                "or set MOONSHOT_API_KEY in the editor's environment."
            )
        if urlsplit(self.base_url).scheme != "https" and not is_loopback(self.base_url):
            raise errors.InsecureTransport(
                f"Refusing to send the API key over plain HTTP to {self.base_url}. Use an https:// kimi.baseUrl."
            )
        return {"Authorization": f"Bearer {clean_key(self._key)}"}

    async def stream_chat(
        self,
        body: dict[str, Any],
        emit: Callable[[str, str], None],
        on_sent: Optional[Callable[[], None]] = None,
        timeout: Optional[float] = None,
        status: Optional[Callable[[str], None]] = None,
        background: bool = False,
    ) -> Reply:
        """Streams one chat completion; `emit(kind, delta)` sees reasoning/content as it arrives, `on_sent()`
        runs once the request is written to the connection, `status(text)` hears of waits (rate limits).
        `background` (completions): sent at once or not at all (RateLimited), never queued or retried, and never
        in the way of the user's own requests (limits.AccountGate.background_refusal).

        Raises KimiError on any failure, including a stream that ends without [DONE].
        """
        body = redact.redact_obj(body)
        _log_body("POST /chat/completions", self.base_url, body)
        self._headers()  # fail fast on a missing key or an insecure URL, before any I/O
        assert self._key is not None
        gate = self._pool.gate(self.settings, self._key)
        if background:
            return await self._background(gate, body, emit, timeout)
        overall = self.settings.request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + overall
        ticket = gate.ticket()  # the request's place in line, kept through every retry
        not_before, reason, attempt, requeues = 0.0, "rate limit", 0, 0
        queued = False
        try:
            async with asyncio.timeout(overall):
                while True:
                    queued = True
                    slot = await gate.acquire(ticket, not_before=not_before, reason=reason, status=status)
                    queued = False
                    try:
                        if slot.waited and status is not None:
                            status(WAITING)
                        reply: Reply = await self._stream_once(body, emit, on_sent, on_accepted=slot.accept)
                        return reply
                    except errors.KimiError as exc:
                        if isinstance(exc, errors.Unauthorized):
                            gate.uncount(slot)
                        if not exc.retryable:
                            raise
                        kind, stated = limits.classify(exc.api_message)
                        if not isinstance(exc, errors.RateLimited):
                            kind = "other"
                        if kind != "other":  # the account's limit: learn it, keep the place in line
                            gate.rejected(slot, kind, stated)
                            wait = exc.wait if exc.wait is not None else RETRY_BASE * 2 ** min(requeues, 4)
                            gate.pause_background(wait)  # completions stay off while the user's request waits
                            requeues += 1
                        else:  # overload, tokens per minute, 5xx: a few times only
                            wait = exc.wait if exc.wait is not None else RETRY_BASE * (2**attempt)
                            if attempt >= MAX_RETRIES or wait > MAX_WAIT:
                                raise
                            attempt += 1
                        if loop.time() + wait > deadline:
                            raise  # the hint alone outlasts the time-out: say so now rather than at the end
                        log.info("%s (%s): queued again, retrying in %.2g s", exc.code, body.get("model", ""), wait)
                        reason = (
                            "rate limit" if isinstance(exc, errors.RateLimited) else _REASONS.get(exc.code, "retry")
                        )
                        not_before = time.monotonic() + wait
                    finally:
                        slot.release()
        except TimeoutError:
            limit = self.settings.request_timeout
            if queued and reason != "rate limit":
                raise errors.TimedOut(
                    f"Kimi did not finish within {limit:g} s (kimi.requestTimeout): the request was still waiting to "
                    f"be retried ({reason})."
                ) from None
            if queued:
                raise errors.TimedOut(
                    f"Kimi did not finish within {limit:g} s (kimi.requestTimeout): the request was still queued for "
                    f"the rate limit ({gate.describe()}; {gate.in_flight} running, {gate.queued} waiting). Moonshot "
                    "limits requests per account by tier; kimi.maxConcurrentRequests caps them by hand."
                ) from None
            raise errors.TimedOut(f"Kimi did not finish within {limit:g} s (kimi.requestTimeout).") from None

    async def _background(
        self, gate: limits.AccountGate, body: dict[str, Any], emit: Callable[[str, str], None], timeout: Optional[float]
    ) -> Reply:
        if (why := gate.background_refusal()) is not None:
            raise errors.RateLimited(why)
        slot = await gate.acquire(gate.ticket())  # free now: background_refusal checked the cap and the line
        try:
            async with asyncio.timeout(self.settings.request_timeout if timeout is None else timeout):
                return await self._stream_once(body, emit, None, on_accepted=slot.accept)
        except errors.RateLimited as exc:
            kind, stated = limits.classify(exc.api_message)
            if kind != "other":
                gate.rejected(slot, kind, stated)
            gate.pause_background(exc.wait if exc.wait is not None else RETRY_BASE * 4)
            raise
        except TimeoutError:
            raise errors.TimedOut("The completion did not arrive in time.") from None
        finally:
            slot.release()

    async def get_json(self, path: str, *, timeout: float = 15.0) -> Any:
        return await self._with_retries(lambda: self._json_once("GET", path, None), model="", overall=timeout)

    async def post_json(self, path: str, payload: dict[str, Any], *, timeout: float = 15.0) -> Any:
        payload = redact.redact_obj(payload)
        _log_body(f"POST {path}", self.base_url, payload)
        return await self._with_retries(
            lambda: self._json_once("POST", path, payload), model=payload.get("model", ""), overall=timeout
        )

    async def list_models(self) -> list[dict[str, Any]]:
        data = await self.get_json("/models")
        items = data.get("data") if isinstance(data, dict) else None
        return [m for m in items or [] if isinstance(m, dict) and m.get("id")]

    async def estimate_tokens(self, model: str, messages: list[dict[str, Any]]) -> int:
        data = await self.post_json("/tokenizers/estimate-token-count", {"model": model, "messages": messages})
        return int(data["data"]["total_tokens"])

    async def balance(self) -> float:
        data = await self.get_json("/users/me/balance")
        return float(data["data"]["available_balance"])

    # -- internals -------------------------------------------------------------------------------------------

    async def _with_retries(
        self, once: Callable[[], Awaitable[Any]], *, model: str, overall: float, limit: Optional[float] = None
    ) -> Any:
        """The small JSON endpoints (not rate-limit queued): `overall` bounds every try and wait together;
        `limit`: the budget as the user set it, named in the message."""
        self._headers()  # fail fast on a missing key or an insecure URL, before any I/O
        attempt = 0
        try:
            async with asyncio.timeout(overall):
                while True:
                    try:
                        return await once()
                    except errors.KimiError as exc:
                        if not exc.retryable or attempt >= MAX_RETRIES:
                            raise
                        wait = exc.wait if exc.wait is not None else RETRY_BASE * (2**attempt)
                        if wait > MAX_WAIT:
                            raise
                        attempt += 1
                        log.info("retrying after %s (%s), attempt %d", exc.code, model, attempt)
                        await asyncio.sleep(wait)
        except TimeoutError:
            raise errors.TimedOut(f"Kimi did not finish within {limit or overall:g} s (kimi.requestTimeout).") from None

    async def _json_once(self, method: str, path: str, payload: Optional[dict[str, Any]]) -> Any:
        client = self._pool.get(self.settings)
        try:
            resp = await client.request(method, path, json=payload, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _network_error(exc, self.base_url) from None
        if resp.status_code != 200:
            raise self._http_error(resp, resp.text, payload.get("model", "") if payload else "")
        try:
            return resp.json()
        except ValueError:
            raise errors.StreamBroken(f"{self.base_url}{path} answered with something that is not JSON.") from None

    async def _stream_once(
        self,
        body: dict[str, Any],
        emit: Callable[[str, str], None],
        on_sent: Optional[Callable[[], None]] = None,
        on_accepted: Optional[Callable[[], None]] = None,
    ) -> Reply:
        client = self._pool.get(self.settings)
        reader = ChunkReader(emit)
        extensions = {"trace": _on_event("send_request_body.complete", on_sent)} if on_sent else None
        try:
            async with client.stream(
                "POST", "/chat/completions", json=body, headers=self._headers(), extensions=extensions
            ) as resp:
                request_id = resp.headers.get("msh-request-id")
                if resp.status_code != 200:
                    text = (await resp.aread()).decode("utf-8", "replace")
                    raise self._http_error(resp, text, body.get("model", ""))
                if on_accepted is not None:
                    on_accepted()
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    if body.get("stream") is False and "json" in ctype:
                        reader.feed(json.loads(await resp.aread()))
                        reader.reply.done = True
                        return reader.finish()
                    raise errors.StreamBroken(
                        f"{self.base_url} answered with {ctype or 'no content type'} instead of a stream; is "
                        "kimi.baseUrl a Moonshot-compatible API?",
                        request_id=request_id,
                    )
                events = EventSource(resp).aiter_sse()
                async for sse in events:
                    if sse.data.strip() == "[DONE]":
                        reader.reply.done = True
                        await _drain(events)
                        break
                    if not sse.data.strip():
                        continue
                    try:
                        chunk = json.loads(sse.data)
                        reader.feed(chunk)
                    except ValueError:
                        raise errors.StreamBroken(
                            "Kimi sent a malformed stream event; nothing was applied.", request_id=request_id
                        ) from None
        except httpx.HTTPError as exc:
            raise _network_error(
                exc, self.base_url, during_stream=bool(reader.reply.content or reader.reply.reasoning)
            ) from None
        reply = reader.finish()
        if not reply.done:
            raise errors.StreamBroken(
                "The answer stopped before it was complete (the stream ended without [DONE]); nothing was applied.",
                request_id=request_id,
            )
        return reply

    def _http_error(self, resp: httpx.Response, text: str, model: str) -> errors.KimiError:
        return errors.from_response(
            resp.status_code,
            text,
            base_url=self.base_url,
            model=model,
            request_id=resp.headers.get("msh-request-id"),
            retry_after=resp.headers.get("retry-after"),
            location=resp.headers.get("location"),
        )


_REASONS = {"overloaded": "Kimi is overloaded", "server-error": "server error", "stream-broken": "stream broke"}


def _log_body(what: str, base_url: str, body: dict[str, Any]) -> None:
    """At DEBUG: the request as sent (already redacted), images replaced by their size."""
    if not log.isEnabledFor(logging.DEBUG):
        return

    def shrink(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("type") == "image_url":
                url = str((value.get("image_url") or {}).get("url", ""))
                return {"type": "image_url", "image_url": f"[image, {len(url)} characters of data URL]"}
            return {k: shrink(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shrink(v) for v in value]
        return value

    log.debug("%s %s %s", what, base_url, json.dumps(shrink(body), ensure_ascii=False)[:20000])


def _on_event(suffix: str, callback: Callable[[], None]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore `trace` extension that calls `callback` when an event ending in `suffix` completes."""

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith(suffix):
            callback()

    return trace


async def _drain(events: Any) -> None:
    """Read what follows [DONE] (the end of the chunked body), so the connection goes back to the pool: a new
    TLS connection per request would cost far more. A server that keeps the stream open is not waited for."""
    try:
        async with asyncio.timeout(0.5):
            async for _ in events:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


def _network_error(exc: httpx.HTTPError, base_url: str, during_stream: bool = False) -> errors.KimiError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ProxyError):
        return errors.NetworkError(
            f"The proxy refused or failed the connection to {base_url}: {text}. "
            "Check kimi.proxy or the HTTPS_PROXY variable."
        )
    if (
        "CERTIFICATE_VERIFY_FAILED" in text
        or isinstance(getattr(exc, "__cause__", None), ssl.SSLError)
        or "SSL" in text
    ):
        return errors.NetworkError(
            f"TLS verification failed for {base_url}: {text}. Behind a TLS-inspecting proxy, "
            "point kimi.caBundle at your organisation's CA certificate (PEM)."
        )
    if isinstance(exc, httpx.TimeoutException):
        return errors.TimedOut(f"Connecting to {base_url} timed out. Check your network or proxy settings.")
    if during_stream or isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return errors.StreamBroken(
            f"The connection to {base_url} broke before the answer was complete ({text}); nothing was applied."
        )
    return errors.NetworkError(
        f"Could not reach {base_url}: {text}. Check your network, kimi.region / kimi.baseUrl and proxy settings."
    )
