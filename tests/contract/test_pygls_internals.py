"""The canary for lsp/protocol.py (#13): every pygls internal the fenced protocol relies on is still there, with the
shape it uses. pyproject pins pygls>=2.1.1,<2.2; this fails first when a pygls release moves one of them."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from lsprotocol import types as lsp
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCProtocol

from kimi_lsp.lsp.app import create_server
from kimi_lsp.lsp.protocol import KimiProtocol


def test_pygls_is_a_tested_release():
    major, minor = (int(x) for x in version("pygls").split(".")[:2])
    assert (major, minor) == (2, 1)


def test_the_private_methods_overridden_or_called_exist_with_their_parameters():
    for cls, name, params in [
        (JsonRPCProtocol, "_send_response", ["msg_id", "result", "error"]),
        (JsonRPCProtocol, "_handle_response", ["msg_id", "result", "error"]),
        (JsonRPCProtocol, "_send_data", ["data"]),
        (JsonRPCProtocol, "_serialize_message", ["data"]),
        (JsonRPCProtocol, "structure_message", ["data"]),
        (JsonRPCProtocol, "handle_message", ["message"]),
        (JsonRPCProtocol, "send_request_async", ["method", "params", "msg_id"]),
        (LanguageServerProtocol, "lsp_shutdown", []),
        (LanguageServerProtocol, "lsp_exit", []),
        (LanguageServerProtocol, "lsp_initialize", ["params"]),
    ]:
        method = getattr(cls, name, None)
        assert callable(method), f"{cls.__name__}.{name} is gone"
        names = list(inspect.signature(method).parameters)
        assert all(p in names for p in params), f"{cls.__name__}.{name}{names}: expected {params}"


def test_the_private_state_read_exists_on_a_live_protocol():
    ls = create_server()
    protocol = ls.protocol
    assert isinstance(protocol, KimiProtocol)
    assert isinstance(protocol._request_futures, dict) and isinstance(protocol._result_types, dict)
    for attr in ("msg_id", "_shutdown", "_include_headers", "_converter", "fm", "writer"):
        assert hasattr(protocol, attr), attr
    assert protocol.VERSION == "2.0" and protocol.CHARSET and protocol.CONTENT_TYPE
    assert callable(protocol.set_writer) and lsp.SHUTDOWN in protocol.fm.builtin_features
