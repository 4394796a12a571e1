"""What an answer cost: usage read the same way from every reply shape, priced from the model catalogue.

Pure functions. A price that is not known gives no cost (tokens are still shown): never a guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from kimi_lsp.kimi.models import WEB_SEARCH_PRICE, Price

if TYPE_CHECKING:
    from kimi_lsp.settings import Settings

SYMBOLS = {"USD": "$", "CNY": "¥"}
_HOST_CURRENCY = {"api.moonshot.ai": "USD", "api.moonshot.cn": "CNY"}


def currency_for(settings: Settings) -> str:
    """USD on api.moonshot.ai, CNY on api.moonshot.cn; for any other base URL the region setting decides."""
    host = (urlsplit(settings.effective_base_url).hostname or "").lower()
    return _HOST_CURRENCY.get(host) or ("CNY" if settings.region == "china" else "USD")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def normalise_usage(usage: Optional[dict[str, Any]]) -> dict[str, int]:
    """prompt/completion/total/cached tokens from a reply's usage: `cached_tokens` sits at the top level or in
    `prompt_tokens_details`; `prompt_tokens` includes the cached ones."""
    if not isinstance(usage, dict):
        return {}
    details = usage.get("prompt_tokens_details")
    cached = _int(usage.get("cached_tokens")) or (
        _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    )
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    out = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _int(usage.get("total_tokens")) or prompt + completion,
        "cached_tokens": min(cached, prompt) if prompt else cached,
    }
    return out


def add_usage(total: dict[str, int], usage: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + usage.get(k, 0) for k in dict.fromkeys([*total, *usage])}


def cost(
    usage: dict[str, int], price: Optional[Price], currency: str, web_searches: int = 0
) -> Optional[dict[str, Any]]:
    """`{amount, currency}` for normalised `usage` at `price` (per million tokens), or None with no price."""
    if price is None or not usage:
        return None
    cached = usage.get("cached_tokens", 0)
    missed = max(0, usage.get("prompt_tokens", 0) - cached)
    amount = (
        missed * price.input + cached * price.cached_input + usage.get("completion_tokens", 0) * price.output
    ) / 1e6
    amount += web_searches * WEB_SEARCH_PRICE.get(currency, 0.0)
    out: dict[str, Any] = {"amount": round(amount, 8), "currency": currency}
    if price.note:
        out["note"] = price.note
    return out


def money(amount: float, currency: str) -> str:
    sign = SYMBOLS.get(currency, "")
    text = f"{sign}{amount:.4f}" if sign else f"{amount:.4f} {currency}"
    if 0 < amount < 0.00005:
        return "<" + (f"{sign}0.0001" if sign else f"0.0001 {currency}")
    return text


def describe(usage: Optional[dict[str, int]], spent: Optional[dict[str, Any]], web_searches: int = 0) -> str:
    """The line an answer ends with: "1,234 tokens (800 cached) · $0.0012"."""
    if not usage:
        return "usage not reported"
    text = f"{usage.get('total_tokens', 0):,} tokens"
    if usage.get("cached_tokens"):
        text += f" ({usage['cached_tokens']:,} cached)"
    if web_searches:
        text += f" · {web_searches} web search{'es' if web_searches != 1 else ''}"
    if spent is not None:
        text += f" · {money(float(spent['amount']), str(spent['currency']))}"
    return text


class Ledger:
    """What this session's answers cost: tokens, and money per currency (answers with no known price are
    counted, not priced)."""

    def __init__(self) -> None:
        self.answers = 0
        self.unpriced = 0
        self.usage: dict[str, int] = {}
        self.spent: dict[str, float] = {}

    def record(self, usage: Optional[dict[str, int]], spent: Optional[dict[str, Any]]) -> None:
        self.answers += 1
        self.usage = add_usage(self.usage, usage or {})
        if spent is None:
            self.unpriced += 1
        else:
            currency = str(spent["currency"])
            self.spent[currency] = self.spent.get(currency, 0.0) + float(spent["amount"])

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "usage": self.usage,
            "cost": [{"amount": round(v, 8), "currency": c} for c, v in self.spent.items()],
            "unpriced": self.unpriced,
            "text": self.describe(),
        }

    def describe(self) -> str:
        if not self.answers:
            return "no answers yet"
        text = f"{self.answers} answer{'s' if self.answers != 1 else ''}, " + describe(self.usage, None)
        money_text = " + ".join(money(v, c) for c, v in self.spent.items())
        if money_text:
            text += f" · {money_text}"
        if self.unpriced:
            text += f" ({self.unpriced} without a known price)"
        return text
