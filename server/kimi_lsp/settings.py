"""The `kimi` settings section: one typed model, camelCase keys, a default for everything.

`merge_settings` validates what the editor sent key by key: a bad key keeps its last good value and is reported,
the rest still applies (jedi-language-server's rule: report settings errors, keep the defaults).
"""

from __future__ import annotations

from typing import Any, Literal, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

REGION_URLS = {
    "international": "https://api.moonshot.ai/v1",
    "china": "https://api.moonshot.cn/v1",
}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Price(_Camel):
    input: float = Field(ge=0, description="Per million prompt tokens that miss the cache.")
    cached_input: Optional[float] = Field(None, ge=0, description="Per million cached prompt tokens; null = input.")
    output: float = Field(ge=0, description="Per million completion tokens (reasoning included).")


class CustomModel(_Camel):
    id: str = Field(min_length=1, description="The model id as the API knows it.")
    context_length: int = Field(131072, gt=0, description="Context window in tokens.")
    vision: bool = Field(False, description="Accepts images.")
    thinking: bool = Field(False, description="Produces reasoning_content.")
    tools: bool = Field(True, description="Supports tool calling.")
    price: Optional[Price] = Field(
        None, description="Prices per million tokens in the region's currency; overrides the built-in prices."
    )


class CustomAction(_Camel):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = Field(min_length=1)
    prompt: str = Field(min_length=1, description="Template: {selection} {language} {file} {diagnostics} {instruction}")
    output: Literal["replace", "insertBefore", "insertAfter", "show"] = "show"


class InlineSettings(_Camel):
    hover: bool = Field(True, description="Show attached explanations on hover.")
    code_lens: bool = Field(True, description="Show a code lens above explained ranges.")


class CompletionSettings(_Camel):
    enabled: bool = Field(True, description="Ghost-text completion as you type (textDocument/inlineCompletion).")
    model: str = Field(
        "kimi-k2.6",
        min_length=1,
        description="Model for completions, sent with thinking disabled (models that always think cannot complete).",
    )
    debounce_ms: int = Field(120, ge=0, le=5000, description="Wait this long after the last keystroke before asking.")
    max_lines: int = Field(12, ge=1, le=200, description="At most this many lines of ghost text.")
    context_lines: int = Field(60, ge=1, le=2000, description="Lines before the cursor sent (half as many after it).")


class Settings(_Camel):
    model: str = Field("kimi-k2.5", min_length=1, description="Model id (built-in ids get built-in capabilities).")
    region: Literal["international", "china"] = Field(
        "international", description="API region: international (api.moonshot.ai) or china (api.moonshot.cn)."
    )
    base_url: Optional[str] = Field(None, description="Overrides region (OpenAI-compatible proxies, local fakes).")
    thinking: Literal["auto", "enabled", "disabled"] = Field(
        "auto", description="Thinking for models where it is switchable (kimi-k2.5)."
    )
    reasoning_effort: Optional[Literal["low", "high", "max"]] = Field(
        None, description="How hard kimi-k3 thinks (sent as reasoning_effort); null = the model's default."
    )
    max_tokens: Optional[int] = Field(
        None,
        gt=0,
        le=1_048_576,
        description="Reply token limit (sent as max_completion_tokens, clamped to the window left after the "
        "prompt); null = model default.",
    )
    temperature: Optional[float] = Field(
        None, ge=0, le=2, description="Sampling temperature; never sent to models with fixed sampling (kimi-k2.5)."
    )
    request_timeout: float = Field(120.0, gt=0, le=3600, description="Overall request time-out in seconds.")
    max_concurrent_requests: Optional[int] = Field(
        None,
        ge=1,
        le=1000,
        description="At most this many Kimi requests in flight per account; null = learned from the rate-limit "
        "replies (Moonshot's tiers).",
    )
    custom_models: list[CustomModel] = Field(
        default_factory=list, description="Capabilities for model ids the built-in table lacks."
    )
    actions: list[CustomAction] = Field(default_factory=list, description="User-defined code actions.")
    context_lines: int = Field(
        20, ge=0, le=10_000, description="Lines around the selection sent as context when the whole file is not."
    )
    file_context_tokens: int = Field(
        8000,
        ge=0,
        le=1_000_000,
        description="Send the whole file as context, first in the prompt where Moonshot's prefix cache bills it at "
        "the cache price on later actions, when it is at most this many tokens; 0 = only kimi.contextLines.",
    )
    preview_edits: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: proposals to review in the file for clients that show them (our plugins), else edits the "
        "editor previews where it can (change annotations); always: the editor's own preview; never: apply at once.",
    )
    proxy: Optional[str] = Field(
        None, description="http/https/socks5 proxy URL; standard proxy variables apply when unset."
    )
    ca_bundle: Optional[str] = Field(None, description="PEM file of extra trusted CAs (corporate TLS inspection).")
    tools: Literal["auto", "off"] = Field(
        "auto", description="Let models with tool calling read workspace files, search and see diagnostics (read-only)."
    )
    max_tool_rounds: int = Field(6, ge=0, le=50, description="At most this many rounds of tool calls per request.")
    tool_deny: list[str] = Field(default_factory=list, description="Globs of workspace files the tools may never read.")
    web_search: bool = Field(
        False, description="Offer Moonshot's built-in $web_search (billed per call; not with thinking)."
    )
    max_image_bytes: int = Field(
        4_000_000, gt=0, le=100_000_000, description="Largest image file sent to a vision model."
    )
    inline: InlineSettings = Field(
        default_factory=InlineSettings, description="Inline explanations (hover, code lens)."
    )
    completion: CompletionSettings = Field(
        default_factory=CompletionSettings, description="Inline completion (ghost text) as you type."
    )
    command_result: Literal["auto", "immediate", "final"] = Field(
        "auto",
        description="When kimi.* commands answer: at once with {requestId, started} (for editors that wait "
        "synchronously, like eglot), or with the final result; auto: final only for clients that "
        "opt in to kimi/stream.",
    )

    @field_validator("base_url", "proxy", "ca_bundle", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        _check_url(v, ("http", "https"), "must start with http:// or https://")
        return v.rstrip("/") if v else v

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: Optional[str]) -> Optional[str]:
        _check_url(
            v, ("http", "https", "socks5", "socks5h"), "must be an http://, https://, socks5:// or socks5h:// URL"
        )
        return v

    @property
    def effective_base_url(self) -> str:
        return self.base_url or REGION_URLS[self.region]


def _check_url(url: Optional[str], schemes: tuple[str, ...], wrong_scheme: str) -> None:
    """A URL the key may be sent to: one of `schemes`, a host, and nothing that could split a request line or
    header (CR/LF, other control characters, spaces; urlsplit would silently drop some of them)."""
    if url is None:
        return
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must not contain spaces, line breaks or other control characters")
    if not url.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        raise ValueError(wrong_scheme)
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a port outside 0..65535
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if not host:
        raise ValueError("has no host name")


DEFAULTS = Settings()


def merge_settings(raw: Any, previous: Settings = DEFAULTS) -> tuple[Settings, list[str]]:
    """Validate `raw` (the editor's `kimi` section) on top of `previous`.

    Returns the new settings and one human-readable problem per rejected key; a rejected key keeps its
    previous value. Keys the editor did not send fall back to defaults (the editor's view is complete).
    """
    if raw is None:
        return DEFAULTS, []
    if not isinstance(raw, dict):
        return previous, [f"kimi settings must be an object, got {type(raw).__name__}; keeping the previous settings"]
    try:
        return Settings.model_validate(raw), []
    except ValidationError as exc:
        errors = exc.errors()
    bad: dict[str, str] = {}
    for err in errors:
        key = str(err["loc"][0]) if err["loc"] else "?"
        where = ".".join(str(p) for p in err["loc"])
        bad.setdefault(key, f"kimi.{where}: {err['msg']}")
    fields_by_alias = {f.alias or name: name for name, f in Settings.model_fields.items()}
    merged = {k: v for k, v in raw.items() if k not in bad}
    for key in bad:
        name = fields_by_alias.get(key, key)
        if name in Settings.model_fields:
            merged[key] = getattr(previous, name)
    problems = [
        f"{msg} (got {_short(raw.get(key))}); keeping {_short(_dump(previous, key))}" for key, msg in bad.items()
    ]
    try:
        return Settings.model_validate(merged), problems
    except ValidationError:  # should not happen; never crash on settings
        return previous, problems


def _dump(settings: Settings, alias: str) -> Any:
    return settings.model_dump(by_alias=True, mode="json").get(alias)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
