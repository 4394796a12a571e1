"""The model catalogue: what each Kimi model can do and costs, merged with `/models` and the user's `customModels`.

One table serves the server, the CLI, `kimi.listModels` and both editors' model pickers. Facts and prices are
from moonshot-api.md, "Models and rules, December 2026"; prices are data with the date they were taken, and a
`customModels` entry may override them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Optional

if TYPE_CHECKING:
    from kimi_lsp.settings import CustomModel

Thinking = Literal["always", "switchable", "none"]
Status = Literal["current", "retired"]
Currency = Literal["USD", "CNY"]
PRICES_TAKEN = "2026-12"
SUCCESSOR = "kimi-k2.6"  # what Moonshot points retired K2 ids to
WEB_SEARCH_PRICE: dict[str, float] = {"USD": 0.004, "CNY": 0.03}  # per $web_search call


@dataclass(frozen=True)
class Price:
    """Per million tokens: a prompt token that misses the cache, one that hits it, a completion token."""

    input: float
    cached_input: float
    output: float
    note: str = ""  # what the figure leaves out (kimi-k3 also bills cache writes)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_length: int
    vision: bool = False
    thinking: Thinking = "none"
    tools: bool = True
    fixed_sampling: bool = False  # rejects any temperature/top_p but its own: never send them
    known: bool = True  # False for an id nobody described: safe defaults were used
    thinking_keep: bool = False  # accepts thinking.keep: "all" (earlier turns' reasoning kept)
    reasoning_effort: bool = False  # kimi-k3: no `thinking` object, a top-level reasoning_effort instead
    status: Status = "current"
    successor: Optional[str] = None
    good_for: str = ""
    prices: tuple[tuple[str, Price], ...] = field(default=(), compare=False)

    @property
    def default_max_tokens(self) -> int:
        # Thinking models spend reasoning tokens out of the completion budget; Moonshot advises >= 16000.
        if self.thinking != "none":
            return 32768
        return min(8192, max(1024, self.context_length // 4))

    def price(self, currency: str) -> Optional[Price]:
        return dict(self.prices).get(currency)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "contextLength": self.context_length,
            "vision": self.vision,
            "thinking": self.thinking,
            "tools": self.tools,
            "known": self.known,
            "status": self.status,
        }
        if self.successor:
            out["successor"] = self.successor
        if self.good_for:
            out["goodFor"] = self.good_for
        if self.reasoning_effort:
            out["reasoningEffort"] = True
        if self.prices:
            out["prices"] = {
                cur: {"input": p.input, "cachedInput": p.cached_input, "output": p.output} for cur, p in self.prices
            }
        return out


def _p(usd: Optional[tuple[float, float, float]], cny: Optional[tuple[float, float, float]], note: str = "") -> Any:
    """Prices as the reference lists them: (cache hit, cache miss, output) per million; None where not published."""
    out = []
    for currency, row in (("USD", usd), ("CNY", cny)):
        if row is not None:
            hit, miss, output = row
            out.append((currency, Price(input=miss, cached_input=hit, output=output, note=note)))
    return tuple(out)


def _kimi(mid: str, context_length: int = 262144, **kw: Any) -> ModelInfo:
    """A current Kimi model: images and fixed sampling are the rule since K2.5."""
    return ModelInfo(mid, context_length, vision=True, fixed_sampling=True, **kw)


def _retired(mid: str, context_length: int = 262144, **kw: Any) -> ModelInfo:
    return ModelInfo(mid, context_length, status="retired", successor=SUCCESSOR, **kw)


_K = 1024
BUILTIN_MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in [
        _kimi(
            "kimi-k2.5",
            thinking="switchable",
            good_for="the default: strong all-round coding and explanations, images, thinking on or off",
            prices=_p((0.10, 0.60, 3.00), None),
        ),
        _kimi(
            "kimi-k2.6",
            thinking="switchable",
            thinking_keep=True,
            good_for="Moonshot's recommended model: better reasoning across long sessions and tool use",
            prices=_p((0.16, 0.95, 4.00), (1.10, 6.50, 27.0)),
        ),
        _kimi(
            "kimi-k2.7-code",
            thinking="always",
            thinking_keep=True,
            good_for="coding: refactors, fixes and multi-file reasoning (always thinks)",
            prices=_p((0.19, 0.95, 4.00), (1.30, 6.50, 27.0)),
        ),
        _kimi(
            "kimi-k2.7-code-highspeed",
            thinking="always",
            thinking_keep=True,
            good_for="kimi-k2.7-code at about 180 tokens/s, for interactive edits (limited capacity)",
            prices=_p(None, (2.60, 13.0, 54.0)),  # only the USD output price ($8) is published
        ),
        _kimi(
            "kimi-k3",
            1048576,
            thinking="always",
            reasoning_effort=True,
            good_for="the largest window (1M tokens) and the deepest reasoning (kimi.reasoningEffort)",
            prices=_p((0.30, 3.00, 15.00), (2.0, 20.0, 100.0), note="kimi-k3 also bills cache writes, not included"),
        ),
        _retired("kimi-k2-thinking", thinking="always"),
        _retired("kimi-k2-thinking-turbo", thinking="always"),
        _retired("kimi-k2-turbo-preview"),
        _retired("kimi-k2-0905-preview"),
        _retired("kimi-k2-0711-preview", 131072),
        _retired("kimi-latest", 131072, vision=True),
        ModelInfo("moonshot-v1-8k", 8 * _K, good_for="older generation, short prompts"),
        ModelInfo("moonshot-v1-32k", 32 * _K, good_for="older generation"),
        ModelInfo("moonshot-v1-128k", 128 * _K, good_for="older generation, long prompts"),
        ModelInfo("moonshot-v1-8k-vision-preview", 8 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-32k-vision-preview", 32 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-128k-vision-preview", 128 * _K, vision=True, tools=False),
        ModelInfo("moonshot-v1-auto", 128 * _K, good_for="older generation; picks 8k/32k/128k by prompt size"),
    ]
}
DEFAULT_MODEL = "kimi-k2.5"
MOONSHOT_V1_WINDOWS = ["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k"]


def from_live(entry: dict[str, Any], base: Optional[ModelInfo] = None) -> ModelInfo:
    """A `/models` entry; capability fields may be missing on older deployments (fall back to `base`). Listed
    means the account has it now, whatever the table says about retirement."""
    mid = str(entry.get("id", ""))
    base = base or BUILTIN_MODELS.get(mid) or ModelInfo(mid, 131072, known=False)
    ctx = entry.get("context_length")
    info = replace(base, id=mid, known=True, status="current", successor=None)
    if isinstance(ctx, int) and ctx > 0:
        info = replace(info, context_length=ctx)
    if isinstance(entry.get("supports_image_in"), bool):
        info = replace(info, vision=entry["supports_image_in"])
    if entry.get("supports_reasoning") is True and info.thinking == "none":
        info = replace(info, thinking="always")
    return info


def resolve(
    model_id: str, custom: Iterable[CustomModel] = (), live: Optional[dict[str, ModelInfo]] = None, currency: str = ""
) -> ModelInfo:
    """Capabilities for `model_id`: customModels win, then the live list, then the built-in table, else safe
    defaults. A custom entry's `price` is taken to be in `currency` (the region's)."""
    for c in custom:
        if c.id == model_id:
            return _custom(c, BUILTIN_MODELS.get(model_id), currency)
    if live and model_id in live:
        return live[model_id]
    if model_id in BUILTIN_MODELS:
        return BUILTIN_MODELS[model_id]
    # Unknown id: never hard-fail; a conservative window, no vision, no thinking flags, tools off.
    return ModelInfo(model_id, 131072, vision=False, thinking="none", tools=False, known=False)


def _custom(c: CustomModel, base: Optional[ModelInfo], currency: str) -> ModelInfo:
    thinking: Thinking = "always" if c.thinking else "none"
    if base and c.thinking and base.thinking == "switchable":
        thinking = "switchable"
    prices = base.prices if base else ()
    if c.price is not None and currency:
        own = Price(
            input=c.price.input,
            cached_input=c.price.input if c.price.cached_input is None else c.price.cached_input,
            output=c.price.output,
        )
        prices = tuple((cur, p) for cur, p in prices if cur != currency) + ((currency, own),)
    return ModelInfo(
        c.id,
        c.context_length,
        vision=c.vision,
        thinking=thinking,
        tools=c.tools,
        fixed_sampling=base.fixed_sampling if base else False,
        thinking_keep=base.thinking_keep if base else False,
        reasoning_effort=base.reasoning_effort if base else False,
        good_for=base.good_for if base else "",
        prices=prices,
    )


def retirement(model: ModelInfo) -> Optional[str]:
    """What to tell a user whose model id answered 404 because Moonshot retired it."""
    if model.status != "retired" or not model.successor:
        return None
    return f"Moonshot retired {model.id} in 2026; its successor is {model.successor} (set kimi.model to it)."


def current(models: Iterable[ModelInfo]) -> list[ModelInfo]:
    """The models worth suggesting: retired ones are kept in the table only to explain their 404."""
    return [m for m in models if m.status == "current"]


def larger_windows(model_id: str, needed_tokens: int, candidates: Iterable[ModelInfo]) -> list[str]:
    """Models whose context would fit `needed_tokens`; for moonshot-v1, the next larger windows first."""
    fits = [m.id for m in current(candidates) if m.context_length >= needed_tokens and m.id != model_id]
    if model_id in MOONSHOT_V1_WINDOWS:
        family = [m for m in MOONSHOT_V1_WINDOWS if m in fits]
        fits = family + [m for m in fits if m not in family]
    return fits
