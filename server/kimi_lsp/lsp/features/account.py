"""The account commands: models, region, the API key, status."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams

from kimi_lsp import __version__, errors, redact
from kimi_lsp.kimi.keys import KeychainUnavailable, clean_key
from kimi_lsp.kimi.pricing import currency_for, money
from kimi_lsp.lsp.args import KeyArg, ModelArg, NoArgs, RegionArg, parse_args
from kimi_lsp.lsp.feature import command_table
from kimi_lsp.lsp.features.completion import CompletionFeature
from kimi_lsp.lsp.features.diagnostics import clear_all

if TYPE_CHECKING:
    from kimi_lsp.lsp.server import KimiLanguageServer
    from kimi_lsp.settings import Settings

HANDLERS, _handles = command_table()


def _message(ls: KimiLanguageServer, kind: lsp.MessageType, text: str) -> None:
    ls.window_show_message(lsp.ShowMessageParams(type=kind, message=text))


async def status(ls: KimiLanguageServer) -> dict:
    settings = await ls.config.settled()
    key, source = await ls.keys.get(settings.region)
    return {
        "model": settings.model,
        "region": settings.region,
        "baseUrl": settings.effective_base_url,
        "keySource": source,
        "keyPresent": bool(key),
        "version": __version__,
        "running": len(ls.jobs.running),
        "offline": ls.offline_note,
        "currency": currency_for(settings),
        "session": ls.ledger.to_json(),
        "completion": {
            "enabled": settings.completion.enabled,
            "model": settings.completion.model,
            **CompletionFeature.of(ls).status(),
        },
    }


BALANCE_TTL = 60.0  # seconds: editors ask for the status often; the balance moves slowly


async def balance(ls: KimiLanguageServer, settings: Settings) -> dict:
    """The account balance in the region's currency (read at most once a minute), or why it could not be read."""
    currency, url = currency_for(settings), settings.effective_base_url
    cached = ls.balances.get(url)
    if cached is not None and time.monotonic() - cached[0] < BALANCE_TTL:
        amount = cached[1]
    else:
        try:
            amount = await (await ls.kimi(settings)).balance()
        except errors.KimiError as exc:
            return {"balance": None, "balanceError": str(exc)}
        ls.balances[url] = (time.monotonic(), amount)
    text = money(amount, currency) + (" (top up: chat will fail)" if amount <= 0 else "")
    return {"balance": {"amount": amount, "currency": currency, "text": text}}


@_handles("kimi.listModels")
async def list_models(ls, *args: Any) -> dict:
    parse_args(NoArgs, args)
    settings = await ls.config.pull(None)
    error = None
    live: dict = {}
    try:
        live = await ls.refresh_models(await ls.kimi(settings))
    except errors.KimiError as exc:
        error = str(exc)
    custom = {c.id for c in settings.custom_models}
    models = []
    for info in ls.known_models(settings):
        source = "custom" if info.id in custom else "live" if info.id in live else "builtin"
        models.append({**info.to_json(), "source": source})
    return {"models": models, "current": settings.model, "error": error, "currency": currency_for(settings)}


@_handles("kimi.selectModel")
async def select_model(ls, *args: Any) -> dict:
    a = parse_args(ModelArg, args)
    ls.config.override("model", a.model.strip())
    clear_all(ls)
    return await status(ls)


@_handles("kimi.setRegion")
async def set_region(ls, *args: Any) -> dict:
    a = parse_args(RegionArg, args)
    if a.region not in ("international", "china"):
        raise JsonRpcInvalidParams("region must be 'international' or 'china'")
    ls.config.override("region", a.region)
    clear_all(ls)
    return await status(ls)


@_handles("kimi.setApiKey")
async def set_api_key(ls, *args: Any) -> dict:
    raw = args[0] if args else None
    a = KeyArg(key=raw) if isinstance(raw, str) and raw else parse_args(KeyArg, args)
    redact.register(a.key)  # even a key refused below must not come back in a message
    ls.balances.clear()
    try:
        key = clean_key(a.key)
    except errors.InvalidApiKey as exc:
        _message(ls, lsp.MessageType.Warning, f"Kimi: {exc}")
        return {"stored": False, "verified": False, "message": str(exc)}
    settings = await ls.config.settled()
    stored, note = True, ""
    try:
        await ls.keys.set(settings.region, key)
    except KeychainUnavailable as exc:
        stored = False
        ls.keys.remember(settings.region, key)
        note = f"{exc} The key is kept in memory for this session only."
    verified, verdict = await _verify(ls, settings)
    where = f"stored in the OS keychain for the {settings.region} region" if stored else "not stored"
    message = f"Kimi API key {where}. {verdict} {note}".strip()
    _message(ls, lsp.MessageType.Info if verified and stored else lsp.MessageType.Warning, message)
    if verified:
        clear_all(ls)
    return {"stored": stored, "verified": verified, "message": message}


@_handles("kimi.keyHelp")
async def key_help(ls, *args: Any) -> dict:
    """For editors without a password prompt of ours: how to give the server a key."""
    settings = await ls.config.settled()
    console = "platform.moonshot.cn" if settings.region == "china" else "platform.moonshot.ai"
    message = (
        f"Kimi needs an API key for the {settings.region} region (create one at {console}). Set "
        "MOONSHOT_API_KEY in the environment your editor starts kimi-lsp from and restart the server, or "
        f"store it in the OS keychain from a terminal with: kimi-lsp set-key --region {settings.region}"
    )
    # Offered on a key error, and Kimi does nothing until it is followed: shown as an error, because some
    # editors (ALE) hide lesser messages by default.
    _message(ls, lsp.MessageType.Error, message)
    return {"message": message}


@_handles("kimi.clearApiKey")
async def clear_api_key(ls, *args: Any) -> dict:
    parse_args(NoArgs, args)
    settings = await ls.config.settled()
    try:
        cleared = await ls.keys.clear(settings.region)
        message = (
            f"Removed the {settings.region} key from the OS keychain."
            if cleared
            else f"No {settings.region} key was stored in the OS keychain."
        )
    except KeychainUnavailable as exc:
        cleared, message = False, str(exc)
    _message(ls, lsp.MessageType.Info, f"Kimi: {message}")
    return {"cleared": cleared, "message": message}


@_handles("kimi.status")
async def status_command(ls, *args: Any) -> dict:
    parse_args(NoArgs, args)
    out = await status(ls)
    return {**out, **await balance(ls, await ls.config.settled())}


async def _verify(ls: KimiLanguageServer, settings: Settings) -> tuple[bool, str]:
    try:
        await ls.refresh_models(await ls.kimi(settings))
        return True, f"{settings.effective_base_url} accepted it."
    except errors.Unauthorized:
        return False, (
            f"But {settings.effective_base_url} rejected it: check that it is a {settings.region} key "
            "(international and China keys are not interchangeable)."
        )
    except errors.KimiError as exc:
        return False, f"It could not be verified: {exc}"
