"""The arguments of `workspace/executeCommand`, validated (pydantic: loaded with the first command, not at start-up)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field, ValidationError
from pygls.exceptions import JsonRpcInvalidParams


class Pos(BaseModel):
    line: int = Field(ge=0)
    character: int = Field(ge=0)


class Range(BaseModel):
    start: Pos
    end: Pos


class Diag(BaseModel):
    message: str
    line: Optional[int] = None
    source: str = ""
    code: Any = None


class ActionArgs(BaseModel):
    uri: Optional[str] = None
    range: Optional[Range] = None
    instruction: str = ""
    prompt: str = ""
    id: Optional[str] = None
    diagnostics: list[Diag] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    width: Optional[int] = Field(None, ge=20, le=1000)  # the editor's text width, for comments
    threadId: Optional[str] = None  # a follow-up in this conversation (ask, explain)
    tag: Optional[str] = Field(
        None, max_length=200
    )  # the client's own name for the request, echoed in kimi/stream start


class ModelArg(BaseModel):
    model: str = Field(min_length=1)


class RegionArg(BaseModel):
    region: str


class KeyArg(BaseModel):
    key: str = Field(min_length=1)


class ExplanationArg(BaseModel):
    uri: Optional[str] = None
    id: Optional[str] = None


class ProposalArg(BaseModel):
    proposalId: str = Field(min_length=1)
    hunks: Optional[list[str]] = None


class RefineArg(BaseModel):
    proposalId: str = Field(min_length=1)
    instruction: str = Field(min_length=1)


class NextEditArg(BaseModel):
    uri: str = Field(min_length=1)
    position: Pos


class ThreadArg(BaseModel):
    threadId: str = Field(min_length=1)


class ApplyArg(BaseModel):
    threadId: str = Field(min_length=1)
    turn: int = Field(ge=0)
    block: int = Field(0, ge=0)


class NoArgs(BaseModel):
    pass


class CancelArg(BaseModel):
    requestId: Optional[str] = None


def parse_args(model: type[BaseModel], args: tuple[Any, ...]) -> Any:
    if len(args) > 1:
        raise JsonRpcInvalidParams(f"expected one object argument, got {len(args)} arguments")
    raw = args[0] if args else {}
    if isinstance(raw, list) and len(args) == 1:  # some clients wrap the arguments once more
        raw = raw[0] if raw else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise JsonRpcInvalidParams(f"expected one object argument, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        raise JsonRpcInvalidParams(f"invalid argument {where}: {first['msg']}") from None
