"""Moonshot's per-model request rules (moonshot-api.md): pure, unit-tested."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from kimi_lsp.kimi.models import ModelInfo

if TYPE_CHECKING:  # pydantic loads on first use, not at start-up
    from kimi_lsp.settings import Settings


def chat_body(
    model: ModelInfo,
    settings: Settings,
    messages: list[dict[str, Any]],
    *,
    stream: bool = True,
    tools: Optional[list[dict[str, Any]]] = None,
    tool_choice: Optional[str] = None,
) -> dict[str, Any]:
    """The request body for `model`, following the model rules in moonshot-api.md."""
    body: dict[str, Any] = {
        "model": model.id,
        "messages": messages,
        "max_tokens": settings.max_tokens or model.default_max_tokens,
    }
    if model.thinking == "switchable" and settings.thinking != "auto":
        body["thinking"] = {"type": settings.thinking}
    if settings.temperature is not None and not model.fixed_sampling:
        body["temperature"] = settings.temperature
    if tools:
        body["tools"] = tools
        # Only "auto" and "none": "required" is unsupported, a named function fails with thinking on.
        body["tool_choice"] = tool_choice or "auto"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def thinks(model: ModelInfo, settings: Settings) -> bool:
    return model.thinking == "always" or (model.thinking == "switchable" and settings.thinking != "disabled")
