"""The base of every feature (esbonio-style): its own state, no-op hooks for lifecycle and document events that
lsp/app.py calls on every feature, each behind its own error boundary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer

F = TypeVar("F", bound="Feature")


class Feature:
    def __init__(self, ls: KimiLanguageServer) -> None:
        self.ls = ls

    @classmethod
    def of(cls: type[F], ls: KimiLanguageServer) -> F:
        """This server's instance of the feature."""
        return cast(F, ls.features[cls])

    def register(self) -> None:
        """Registers the feature's own LSP handlers (called once, before `initialize`)."""

    def initialized(self) -> None: ...
    def did_open(self, uri: str) -> None: ...
    def did_change(self, uri: str) -> None: ...
    def did_close(self, uri: str) -> None: ...
    def configuration_changed(self) -> None: ...
    async def shutdown(self) -> None: ...


Handler = Callable[..., Awaitable[Any]]


def command_table() -> tuple[dict[str, Handler], Callable[[str], Callable[[Handler], Handler]]]:
    """A feature's `workspace/executeCommand` handlers by name, and the decorator that fills the table."""
    table: dict[str, Handler] = {}

    def handles(name: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            table[name] = fn
            return fn

        return register

    return table, handles
