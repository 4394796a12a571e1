"""The fake's scripted failures (`Fault`) and the API's error bodies."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal, Optional

UsagePlacement = Literal["choice", "final", "both"]
USAGE_PLACEMENTS = ("choice", "final", "both")

MAX_BODY_BYTES = 100 * 1024 * 1024  # Moonshot's documented request limit
HUGE_REPLY_LINES = 10 * 1024  # the "huge" fault replies with this many 1 KiB lines: 10 MiB
HUGE_CHUNK_CHARS = 64 * 1024
DRIP_INTERVAL = 1.0  # seconds between bytes for the "drip" fault
SWITCHABLE_THINKING_MODEL = "kimi-k2.5"
ORG = "org-fake<ak-fake>"  # how real error texts quote the account: never a key

# The gateway's own 404, which is not OpenAI-shaped: clients must cope with a body without "error".
NOT_FOUND_BODY = {"code": 5, "error": "url.not_found", "message": "没找到对象", "scode": "0x5", "status": False}


# --------------------------------------------------------------------------------------------------- faults

ERROR_FAULTS = frozenset(
    {
        "unauthorized",
        "bad_key",
        "model_not_found",
        "context_too_long",
        "temperature",
        "content_filter",
        "permission_denied",
        "rate_limit",
        "overloaded",
        "quota",
        "suspended",
        "quota_403",
        "server_error",
    }
)
RAW_FAULTS = frozenset({"no_error_body", "wrong_content_type"})
REPLY_FAULTS = frozenset({"cut", "not_json", "slow_first", "drip", "huge", "reply", "think_tags", "length"})
FAULT_KINDS = ERROR_FAULTS | RAW_FAULTS | REPLY_FAULTS


def _non_negative(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool) and value >= 0


@dataclass
class Fault:
    """One scripted behaviour, consumed by the next /chat/completions request that passes auth."""

    kind: str
    after_chunks: int = 3  # "cut", "not_json": content chunks sent before the fault strikes
    delay: float = 0.0  # "slow_first": seconds before the first token
    content: Optional[str] = None  # "reply": exact assistant content (None: the usual deterministic reply)
    reasoning: Optional[str] = None  # "reply": exact reasoning_content (None: the model's usual; "": none)
    finish_reason: str = "stop"  # "reply"
    wait: Optional[int] = 1  # "rate_limit": seconds in the "try again after" hint; None drops the hint

    def __post_init__(self) -> None:
        # Fail where the test is written (or at POST /_fake/script), not later as a puzzling reply.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not _non_negative(self.after_chunks, int):
            raise ValueError("after_chunks must be a non-negative integer")
        if not _non_negative(self.delay) or not (self.wait is None or _non_negative(self.wait)):
            raise ValueError("delay and wait must be non-negative numbers")
        if not (
            isinstance(self.finish_reason, str)
            and all(v is None or isinstance(v, str) for v in (self.content, self.reasoning))
        ):
            raise ValueError("content, reasoning and finish_reason must be strings")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """A fault from the control API: a bare kind, or an object with snake_case or camelCase fields."""
        if isinstance(data, str):
            return cls(kind=data)
        if not isinstance(data, dict):
            raise ValueError("a fault must be a kind string or an object")
        names = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            name = re.sub(r"([A-Z])", r"_\1", str(key)).lower()
            if name not in names:
                raise ValueError(f"unknown fault field {key!r}")
            kwargs[name] = value
        if "kind" not in kwargs:
            raise ValueError("a fault needs a kind")
        return cls(**kwargs)


def _fault_error(fault: Fault, model: str, context_length: int, requested: int) -> _ApiError:
    """The HTTP error a scripted error fault stands for, with the texts seen on the live API."""
    match fault.kind:
        case "unauthorized":
            return _ApiError(401, "invalid_authentication_error", "Invalid Authentication")
        case "bad_key":
            return _ApiError(401, "incorrect_api_key_error", "Incorrect API key provided")
        case "model_not_found":
            return _model_not_found(model)
        case "context_too_long":
            return _context_too_long(context_length, requested)
        case "temperature":
            return _invalid("invalid temperature: only 1 is allowed for this model")
        case "content_filter":
            return _ApiError(400, "content_filter", "The request was rejected because it was considered high risk")
        case "permission_denied":
            return _ApiError(403, "permission_denied_error", "The API you are accessing is not open")
        case "rate_limit":
            hint = "" if fault.wait is None else f", please try again after {fault.wait} seconds"
            return _ApiError(
                429, "rate_limit_reached_error", f"Your account {ORG} request reached organization max RPM: 3{hint}"
            )
        case "overloaded":
            return _ApiError(
                429, "engine_overloaded_error", "The engine is currently overloaded, please try again later"
            )
        case "quota" | "quota_403":
            return _ApiError(
                429 if fault.kind == "quota" else 403,
                "exceeded_current_quota_error",
                "You exceeded your current token quota: <org-fake> 338950, please check your account balance",
            )
        case "suspended":
            return _ApiError(
                429,
                "exceeded_current_quota_error",
                f"Your account {ORG} is suspended, please check your plan and billing details",
            )
        case "server_error":
            return _ApiError(500, "server_error", "The server had an error while processing your request")
    raise AssertionError(f"not an error fault: {fault.kind}")


# ------------------------------------------------------------------------------------------------- errors


class _ApiError(Exception):
    """An OpenAI-shaped error reply: `{"error": {"type", "message"}}` with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, error_type, message

    def body(self) -> dict:
        return {"error": {"type": self.type, "message": self.message}}


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "invalid_request_error", message)


def _model_not_found(model: str) -> _ApiError:
    return _ApiError(404, "resource_not_found_error", f"Not found the model {model} or Permission denied")


def _context_too_long(context_length: int, requested: int) -> _ApiError:
    return _invalid(
        f"Invalid request: Your request exceeded model token limit: {context_length} (requested: {requested})"
    )
