"""What each Kimi model can do: the built-in table, merged with `/models` and the user's `customModels`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kimi_lsp.settings import CustomModel

Thinking = Literal["always", "switchable", "none"]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_length: int
    vision: bool = False
    thinking: Thinking = "none"
    tools: bool = True
    fixed_sampling: bool = False  # kimi-k2.5 rejects any temperature/top_p/n but its own
    known: bool = True  # False for an id nobody described: safe defaults were used

    @property
    def default_max_tokens(self) -> int:
        # Thinking models spend reasoning tokens out of max_tokens; Moonshot advises >= 16000.
        if self.thinking != "none":
            return 32768
        return min(8192, max(1024, self.context_length // 4))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contextLength": self.context_length,
            "vision": self.vision,
            "thinking": self.thinking,
            "tools": self.tools,
            "known": self.known,
        }


_K = 1024
BUILTIN_MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in [
        ModelInfo("kimi-k2.5", 262144, vision=True, thinking="switchable", fixed_sampling=True),
        ModelInfo("kimi-k2-thinking", 262144, thinking="always"),
        ModelInfo("kimi-k2-thinking-turbo", 262144, thinking="always"),
        ModelInfo("kimi-k2-turbo-preview", 262144),
        ModelInfo("kimi-k2-0905-preview", 262144),
        ModelInfo("kimi-k2-0711-preview", 131072),
        ModelInfo("moonshot-v1-8k", 8 * _K),
        ModelInfo("moonshot-v1-32k", 32 * _K),
        ModelInfo("moonshot-v1-128k", 128 * _K),
        ModelInfo("moonshot-v1-8k-vision-preview", 8 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-32k-vision-preview", 32 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-128k-vision-preview", 128 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-auto", 128 * _K),
    ]
}
DEFAULT_MODEL = "kimi-k2.5"
MOONSHOT_V1_WINDOWS = ["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k"]


def from_live(entry: dict[str, Any], base: ModelInfo | None = None) -> ModelInfo:
    """A `/models` entry; capability fields may be missing on older deployments (fall back to `base`)."""
    mid = str(entry.get("id", ""))
    base = base or BUILTIN_MODELS.get(mid) or ModelInfo(mid, 131072, known=False)
    ctx = entry.get("context_length")
    info = replace(base, id=mid, known=True)
    if isinstance(ctx, int) and ctx > 0:
        info = replace(info, context_length=ctx)
    if isinstance(entry.get("supports_image_in"), bool):
        info = replace(info, vision=entry["supports_image_in"])
    if entry.get("supports_reasoning") is True and info.thinking == "none":
        info = replace(info, thinking="always")
    return info


def resolve(model_id: str, custom: Iterable[CustomModel] = (), live: dict[str, ModelInfo] | None = None) -> ModelInfo:
    """Capabilities for `model_id`: customModels win, then the live list, then the built-in table, else safe defaults."""
    for c in custom:
        if c.id == model_id:
            base = BUILTIN_MODELS.get(model_id)
            return ModelInfo(
                model_id,
                c.context_length,
                vision=c.vision,
                thinking=("always" if c.thinking else "none")
                if not (base and base.thinking == "switchable" and c.thinking)
                else "switchable",
                tools=c.tools,
                fixed_sampling=base.fixed_sampling if base else False,
            )
    if live and model_id in live:
        return live[model_id]
    if model_id in BUILTIN_MODELS:
        return BUILTIN_MODELS[model_id]
    # Unknown id: never hard-fail; a conservative window, no vision, no thinking flags, tools off.
    return ModelInfo(model_id, 131072, vision=False, thinking="none", tools=False, known=False)


def larger_windows(model_id: str, needed_tokens: int, candidates: Iterable[ModelInfo]) -> list[str]:
    """Models whose context would fit `needed_tokens`; for moonshot-v1, the next larger windows first."""
    fits = [m.id for m in candidates if m.context_length >= needed_tokens and m.id != model_id]
    if model_id in MOONSHOT_V1_WINDOWS:
        family = [m for m in MOONSHOT_V1_WINDOWS if m in fits]
        fits = family + [m for m in fits if m not in family]
    return fits
