"""Moonshot's per-model request rules (moonshot-api.md, "Models and rules, December 2026"): pure, unit-tested."""

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
    prompt_tokens: Optional[int] = None,
) -> dict[str, Any]:
    """The request body for `model`. `prompt_tokens`, the local estimate of `messages`, clamps the reply limit
    to what is left of the window, so a long prompt never asks for more than fits."""
    limit = settings.max_tokens or model.default_max_tokens
    if prompt_tokens is not None and model.context_length - prompt_tokens >= 1:
        limit = min(limit, model.context_length - prompt_tokens)
    # max_tokens is deprecated, and one model (k2.6) is reported not to honour it at all.
    body: dict[str, Any] = {"model": model.id, "messages": messages, "max_completion_tokens": limit}
    if model.reasoning_effort:  # kimi-k3: a `thinking` object is rejected
        if settings.reasoning_effort:
            body["reasoning_effort"] = settings.reasoning_effort
    elif model.thinking == "switchable":
        on = settings.thinking != "disabled"
        if on and model.thinking_keep and _replays_a_turn(messages):
            body["thinking"] = {"type": "enabled", "keep": "all"}  # keep the reasoning of earlier turns
        elif settings.thinking != "auto":
            body["thinking"] = {"type": settings.thinking}
    # "always" models: never `thinking: disabled` (a 400 on kimi-k2.7-code); they keep their reasoning anyway.
    if settings.temperature is not None and not model.fixed_sampling:
        body["temperature"] = settings.temperature
    if tools:
        body["tools"] = tools
        # Only "auto" and "none": "required" is unsupported, a named function fails with thinking on.
        body["tool_choice"] = tool_choice or "auto"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    else:
        body["stream"] = False  # said, not left out: the client reads a JSON reply only when it asked for one
    return body


def _replays_a_turn(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "assistant" for m in messages)


def thinks(model: ModelInfo, settings: Settings) -> bool:
    return model.thinking == "always" or (model.thinking == "switchable" and settings.thinking != "disabled")


def notices(model: ModelInfo, settings: Settings) -> list[tuple[str, str]]:
    """Settings this model does not take, as (key, text) notices shown once: the request still runs."""
    out = []
    if model.thinking == "always" and settings.thinking == "disabled":
        out.append(
            (
                f"always-thinks:{model.id}",
                f'Kimi: {model.id} always thinks, so kimi.thinking "disabled" does not apply to it; the request '
                "runs with thinking on.",
            )
        )
    if model.fixed_sampling and settings.temperature is not None:
        out.append(
            (
                f"fixed-sampling:{model.id}",
                f"Kimi: {model.id} uses fixed sampling, so kimi.temperature is not sent to it.",
            )
        )
    if settings.reasoning_effort and not model.reasoning_effort:
        out.append(
            (
                f"no-effort:{model.id}",
                f"Kimi: kimi.reasoningEffort is for kimi-k3; it is not sent to {model.id}.",
            )
        )
    return out
