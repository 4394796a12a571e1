"""Every use of pygls' internals, fenced in one place: the hardened protocol, and the helpers that reach into
pygls' request bookkeeping. Tested against pygls 2.1 (pyproject pins pygls>=2.1.1,<2.2; tests/contract checks the
internals used here still exist)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any, Optional

from lsprotocol import types as lsp
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from kimi_lsp.redact import redact

log = logging.getLogger(__name__)

# Seconds the editor has to answer a request of ours (tests shorten it).
ASK_TIMEOUT = float(os.environ.get("KIMI_LSP_ASK_TIMEOUT", "10"))
EDIT_TIMEOUT = 3 * ASK_TIMEOUT  # applyEdit and questions to the user: they may be looking at a preview


class ClientRequestError(Exception):
    """A request to the editor that gave no usable answer; the message says why, for the user."""


class Unreadable(ClientRequestError):
    """The editor's answer could not be decoded (ask_client names the request)."""


class _Answered:
    """A message that was dealt with while decoding it (answered with an error, or dropped)."""

    jsonrpc = None


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: such numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _to_json(data: Any, default: Callable[[Any], Any]) -> str:
    try:
        return json.dumps(data, default=default, allow_nan=False)
    except ValueError:  # a non-finite number somewhere (the rare path: plain data, then cleaned)
        return json.dumps(_finite(json.loads(json.dumps(data, default=default))), allow_nan=False)


class KimiProtocol(LanguageServerProtocol):
    """pygls' protocol, hardened for a server that must never leave an editor waiting or crash on bad input:
    every request is answered, LSP's lifecycle order is enforced, every answer from the editor resolves the
    request it answers, and everything sent is valid JSON with secrets redacted."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_seen = False
        self.shutdown_received = False
        self._writes: set[asyncio.Future[Any]] = set()
        self.on_exit: Optional[Callable[[int], None]] = None  # set by stdio.py: how `exit` ends this session

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" in data and "id" in data and "method" not in data:
            return self._structure_answer(data)
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if isinstance(data, dict) and "id" in data and "method" in data:  # answer it, or the editor waits forever
                error = JsonRpcInvalidParams(f"invalid parameters for {data.get('method')}")
                self._send_response(data["id"], error=error.to_response_error())
                return _Answered()
            raise

    def _structure_answer(self, data: dict[str, Any]) -> Any:
        """The editor's answer to one of our requests. pygls logs one it cannot decode and never resolves the
        request's future; here the future fails instead, so whoever waits for it goes on."""
        msg_id = data["id"]
        if not isinstance(msg_id, (str, int)):
            log.warning("dropped an answer with an unusable id")
            return _Answered()
        result_type = self._result_types.pop(msg_id, None)
        try:
            if "error" in data:
                if data["error"] is None:
                    raise ValueError("a null error")
                return self._converter.structure(data, lsp.ResponseErrorMessage)
            return self._converter.structure(data, result_type or JsonRPCResponseMessage)
        except Exception as exc:
            log.warning("the editor's answer to request %s could not be read (%s)", msg_id, type(exc).__name__)
            future = self._request_futures.pop(msg_id, None)
            if future is not None and not future.done():
                future.set_exception(Unreadable("unreadable answer"))
            return _Answered()

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Answered):
            return
        if not hasattr(message, "jsonrpc"):  # valid JSON, but not a JSON-RPC message
            if isinstance(message, dict) and isinstance(message.get("id"), (str, int)) and "method" in message:
                self._send_response(
                    message["id"], error=JsonRpcInvalidRequest("not a JSON-RPC 2.0 request").to_response_error()
                )
            else:
                log.warning("dropped a message that is not JSON-RPC")
            return
        method = getattr(message, "method", None)
        if method is not None and (refusal := self._refusal(message.jsonrpc, method)) is not None:
            if hasattr(message, "id"):
                self._send_response(message.id, error=refusal.to_response_error())
            return  # a notification is dropped
        super().handle_message(message)

    def _refusal(self, version: Any, method: str) -> Optional[JsonRpcException]:
        """Why a request or notification must not run now (LSP's lifecycle order), or None."""
        if version != self.VERSION:
            return JsonRpcInvalidRequest(f"unsupported JSON-RPC version {version!r}")
        if method == lsp.INITIALIZE:
            if self.initialize_seen:
                return JsonRpcInvalidRequest("initialize was already received")
            self.initialize_seen = True
        elif method == lsp.EXIT:
            return None
        elif not self.initialize_seen:
            return JsonRpcServerNotInitialized("the server is not initialized: send initialize first")
        elif self._shutdown:
            return JsonRpcInvalidRequest("the server is shutting down")
        return None

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        future = self._request_futures.get(msg_id)
        if future is not None and future.done():  # we stopped waiting (cancelled): a late answer is fine
            self._request_futures.pop(msg_id, None)
            return
        super()._handle_response(msg_id, result, error)

    def _send_response(self, msg_id: Any, result: Any = None, error: Optional[lsp.ResponseError] = None) -> None:
        if error is not None and isinstance(error.data, dict) and "traceback" in error.data:
            error = lsp.ResponseError(code=error.code, message=error.message)  # pygls logged the traceback
        super()._send_response(msg_id, result, error)

    def _send_data(self, data: Any) -> None:
        """Everything sent to the editor leaves here: valid JSON, redacted once per message, one write."""
        if not data:
            return
        if self.writer is None:
            log.error("no connection to send a message on")
            return
        try:
            body = _to_json(data, self._serialize_message)
        except Exception:
            log.exception("a message could not be encoded")
            if hasattr(data, "result") and getattr(data, "id", None) is not None:  # the editor waits for this one
                self._send_response(
                    data.id, error=JsonRpcInternalError("the answer could not be encoded").to_response_error()
                )
            return
        clean = redact(body)
        if clean != body and getattr(data, "method", None) == lsp.WORKSPACE_APPLY_EDIT:
            # Redacted, the edit would write "[redacted]" into the user's file: it is not sent at all.
            future = self._request_futures.pop(data.id, None)
            if future is not None and not future.done():
                future.set_exception(
                    ClientRequestError("the edit was not sent: it contains text shaped like an API key")
                )
            return
        raw = clean.encode(self.CHARSET)
        if self._include_headers:
            raw = b"Content-Length: %d\r\nContent-Type: %s; charset=%s\r\n\r\n%s" % (
                len(raw),
                self.CONTENT_TYPE.encode(),
                self.CHARSET.encode(),
                raw,
            )
        try:
            res = self.writer.write(raw)
            if inspect.isawaitable(res):  # kept until written: the loop holds tasks only weakly
                task = asyncio.ensure_future(res)
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
        except BrokenPipeError:
            log.error("the editor closed the connection")
            raise
        except Exception:
            log.exception("a message could not be sent")

    @lsp_method(lsp.SHUTDOWN)
    def lsp_shutdown(self, *args: Any):
        self.shutdown_received = True  # an `exit` sent right behind it (not waiting for the answer) is a clean exit
        if (user_handler := self.fm.features.get(lsp.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):  # callbacks remove entries meanwhile
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True
        return None

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any):
        """Ends the session through `on_exit` (stdio.py: the process ends; TCP: this connection closes)."""
        if self.on_exit is None:
            yield from super().lsp_exit(*args)
            return
        if (user_handler := self.fm.features.get(lsp.EXIT)) is not None:
            yield user_handler, args, None
        self.on_exit(0 if self._shutdown or self.shutdown_received else 1)

    async def request(self, method: str, params: Any, msg_id: str) -> Any:
        """Sends a request to the editor; pygls' bookkeeping for it is dropped however it ends."""
        try:
            return await self.send_request_async(method, params, msg_id=msg_id)
        finally:  # no answer will come, or a late one is dropped
            self._request_futures.pop(msg_id, None)
            self._result_types.pop(msg_id, None)

    def current_request_future(self) -> Optional[asyncio.Future[Any] | concurrent.futures.Future[Any]]:
        """pygls' result future of the request being handled now (`$/cancelRequest` cancels it), or None."""
        msg_id = self.msg_id
        return self._request_futures.get(msg_id) if msg_id is not None else None

    def flush(self) -> None:
        """Sends what is queued for the editor now rather than at the end of this event-loop turn."""
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()
