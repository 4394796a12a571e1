"""The VS Code extension's `contributes.configuration` agrees with the server's settings model.

Every `kimi.*` key the server reads (`kimi_lsp.settings.Settings`, nested `inline` keys as `kimi.inline.hover`) is
declared in editors/vscode/package.json with the same default, enum, nullability and bounds, and package.json
declares nothing the server does not know (except the extension's own `kimi.server.*`). Array settings are
compared item field by item field, nested objects (a custom model's `price`) too. The current built-in model ids
are offered as `kimi.model` suggestions; retired ones are not.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kimi_lsp.kimi.models import BUILTIN_MODELS
from kimi_lsp.settings import Settings, merge_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_JSON = ROOT / "editors" / "vscode" / "package.json"
EXTENSION_ONLY_PREFIX = "kimi.server."
# JSON-schema keywords that constrain values: they must say the same thing on both sides.
CONSTRAINTS = ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "pattern")
# Server checks written as pydantic validators, which package.json mirrors as a `pattern` for the Settings UI.
# Each pattern is checked against the server with these samples instead of compared as text.
VALIDATOR_PATTERNS = {
    "kimi.baseUrl": [
        "https://api.moonshot.ai/v1",
        "http://127.0.0.1:8000/v1",
        "",
        "api.moonshot.ai/v1",
        "ftp://example.com",
        "socks5://proxy:1080",
    ],
    "kimi.proxy": [
        "http://proxy:3128",
        "https://proxy",
        "socks5://127.0.0.1:1080",
        "socks5h://p:1",
        "",
        "proxy:3128",
        "ftp://proxy",
        "socks4://p:1",
    ],
}


def _contributed() -> dict[str, dict]:
    manifest = json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))
    config = manifest["contributes"]["configuration"]
    sections = config if isinstance(config, list) else [config]
    props: dict[str, dict] = {}
    for section in sections:
        for key, schema in section["properties"].items():
            assert key not in props, f"{key} is declared twice in package.json"
            props[key] = schema
    return props


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        resolved = dict(defs[ref.rsplit("/", 1)[-1]])
        resolved.update({k: v for k, v in schema.items() if k != "$ref"})
        return resolved
    return schema


def _server_leaves() -> dict[str, dict]:
    """`kimi.<key>` -> {schema, default} for every leaf setting; nested objects (inline) are flattened."""
    full = Settings.model_json_schema(by_alias=True)
    defs = full.get("$defs", {})
    defaults = Settings().model_dump(by_alias=True, mode="json")
    leaves: dict[str, dict] = {}

    def walk(prefix: str, properties: dict, values: dict) -> None:
        for name, raw in properties.items():
            schema = _resolve(raw, defs)
            key = f"{prefix}.{name}"
            if schema.get("type") == "object" and "properties" in schema:
                walk(key, schema["properties"], values[name])
            else:
                leaves[key] = {"schema": schema, "default": values[name]}

    walk("kimi", full["properties"], defaults)
    # Array items reference $defs too; hand the resolved item schema along.
    for leaf in leaves.values():
        items = leaf["schema"].get("items")
        if isinstance(items, dict):
            leaf["items"] = _resolve(items, defs)
    return leaves


SERVER = _server_leaves()
CLIENT = _contributed()


DEFS = Settings.model_json_schema(by_alias=True).get("$defs", {})


def _types(schema: dict) -> set[str]:
    """The JSON types a schema admits (pydantic writes Optional[X] as anyOf [X, null], X maybe a $ref)."""
    if "anyOf" in schema:
        return set().union(*(_types(s) for s in schema["anyOf"]))
    schema = _resolve(schema, DEFS)
    t = schema.get("type")
    if t is None:
        return set()
    return set(t) if isinstance(t, list) else {t}


def _constraints(schema: dict) -> dict[str, Any]:
    """Value constraints, looking inside anyOf branches (where pydantic puts them for Optional fields)."""
    found = {k: schema[k] for k in CONSTRAINTS if k in schema}
    for branch in schema.get("anyOf", []):
        found.update({k: branch[k] for k in CONSTRAINTS if k in branch})
    if "enum" in found and "null" in _types(schema):
        # A nullable enum: JSON schema (VS Code's Settings UI) needs null among the values, pydantic lists it
        # as a separate branch.
        found["enum"] = [v for v in found["enum"] if v is not None]
    return found


def _object_branch(schema: dict) -> dict:
    """The object schema of a (possibly Optional) object field: its properties and required keys."""
    for branch in schema.get("anyOf", [schema]):
        branch = _resolve(branch, DEFS)
        if "properties" in branch:
            return branch
    return {}


def _compare_fields(client_item: dict, server_item: dict, where: str) -> None:
    """Field by field: types, defaults, constraints, descriptions; nested objects recursively."""
    assert set(client_item["properties"]) == set(server_item["properties"]), where
    assert sorted(client_item.get("required", [])) == sorted(server_item.get("required", [])), where
    for field, server_field in server_item["properties"].items():
        client_field = client_item["properties"][field]
        at = f"{where}.{field}"
        assert _types(client_field) == _types(server_field), at
        assert client_field.get("default") == server_field.get("default"), at
        assert _constraints(client_field) == _constraints(server_field), at
        assert client_field.get("description") or client_field.get("markdownDescription"), f"{at} has no description"
        nested = _object_branch(server_field)
        if nested:
            assert "properties" in client_field, f"{at}: package.json must describe the object's fields"
            assert client_field.get("additionalProperties") is False, f"{at}: the server ignores other keys"
            _compare_fields(client_field, nested, at)


def test_package_json_declares_settings():
    assert len(CLIENT) >= len(SERVER) > 10


@pytest.mark.parametrize("key", sorted(SERVER))
def test_every_server_setting_is_declared(key: str):
    assert key in CLIENT, f"{key} is a server setting but editors/vscode/package.json does not declare it"


@pytest.mark.parametrize("key", sorted(CLIENT))
def test_every_declared_setting_is_known_to_the_server(key: str):
    if key.startswith(EXTENSION_ONLY_PREFIX):
        return
    assert key in SERVER, f"package.json declares {key}, which kimi_lsp.settings.Settings does not read"


@pytest.mark.parametrize("key", sorted(SERVER))
def test_default_is_identical(key: str):
    client = CLIENT[key]
    assert "default" in client, f"{key} has no default in package.json"
    expected = SERVER[key]["default"]
    assert client["default"] == expected and type(client["default"]) in (type(expected), int, float), (
        f"{key}: package.json default {client['default']!r} != server default {expected!r}"
    )


@pytest.mark.parametrize("key", sorted(SERVER))
def test_types_and_nullability_match(key: str):
    server_types = _types(SERVER[key]["schema"])
    client_types = _types(CLIENT[key])
    # The server's "integer" is also a valid JSON "number"; nothing else may differ.
    assert client_types == server_types, (
        f"{key}: package.json type {sorted(client_types)} != server {sorted(server_types)}"
    )


@pytest.mark.parametrize("key", sorted(SERVER))
def test_enum_and_bounds_match(key: str):
    client = _constraints(CLIENT[key])
    if key in VALIDATOR_PATTERNS:
        client.pop("pattern", None)
    assert client == _constraints(SERVER[key]["schema"]), key


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, values in VALIDATOR_PATTERNS.items() for v in values])
def test_ui_pattern_accepts_what_the_server_accepts(key: str, value: str):
    pattern = CLIENT[key].get("pattern")
    assert pattern, f"{key}: package.json should mirror the server's validator with a pattern"
    name = key.removeprefix("kimi.")
    _, problems = merge_settings({name: value})
    assert (re.search(pattern, value) is not None) == (not problems), (
        f"{key}={value!r}: the Settings UI {'accepts' if re.search(pattern, value) else 'rejects'} it, "
        f"the server {'rejects' if problems else 'accepts'} it"
    )


@pytest.mark.parametrize("key", sorted(k for k, v in SERVER.items() if "enum" in _constraints(v["schema"])))
def test_enums_are_described(key: str):
    descriptions = CLIENT[key].get("enumDescriptions") or CLIENT[key].get("markdownEnumDescriptions")
    assert descriptions and len(descriptions) == len(CLIENT[key]["enum"]), f"{key}: one enumDescription per value"


@pytest.mark.parametrize("key", sorted(CLIENT))
def test_every_setting_is_described(key: str):
    schema = CLIENT[key]
    assert (schema.get("description") or schema.get("markdownDescription") or "").strip(), f"{key} has no description"


@pytest.mark.parametrize("key", sorted(k for k, v in SERVER.items() if "items" in v))
def test_array_items_match(key: str):
    server_item = SERVER[key]["items"]
    client_item = CLIENT[key].get("items")
    assert isinstance(client_item, dict), f"{key}: package.json must describe the array's items"
    assert _types(client_item) == _types(server_item), key
    if "properties" not in server_item:  # an array of scalars (e.g. globs)
        assert _constraints(client_item) == _constraints(server_item), key
        return
    _compare_fields(client_item, server_item, f"{key}[]")


def test_model_suggestions_are_the_current_built_in_models():
    schema = CLIENT["kimi.model"]
    assert "enum" not in schema, "kimi.model takes any id the API serves: suggest, do not restrict"
    assert schema.get("type") == "string"
    current = [m.id for m in BUILTIN_MODELS.values() if m.status == "current"]
    assert schema.get("examples") == current, (
        "kimi.model examples should list the models.BUILTIN_MODELS with status 'current', in order"
    )
    retired = {m.id for m in BUILTIN_MODELS.values() if m.status == "retired"}
    assert retired, "the catalogue keeps retired ids (to explain their 404)"
    assert not retired & set(schema["examples"]), "retired models must not be suggested"
    assert schema["default"] in current


def test_extension_only_settings():
    extension_only = sorted(k for k in CLIENT if k.startswith(EXTENSION_ONLY_PREFIX))
    assert extension_only == ["kimi.server.logLevel", "kimi.server.path"]
    assert CLIENT["kimi.server.path"]["default"] == ""
    # Passed as `kimi-lsp --log-level`: the same levels, the CLI's default.
    assert CLIENT["kimi.server.logLevel"]["enum"] == ["debug", "info", "warning", "error"]
    assert CLIENT["kimi.server.logLevel"]["default"] == "warning"
