"""B1's baseline: a bare pygls server that only answers `initialize` (and pygls' built-in shutdown/exit).

Same interpreter, same pygls and lsprotocol as kimi-lsp, nothing else imported: the floor any pygls server pays.
BARE_IMPORTS=mod1,mod2 imports those modules first (bench/run.py uses it to attribute kimi-lsp's extra start
time to its dependencies).
"""

import importlib
import os

from pygls.lsp.server import LanguageServer

if __name__ == "__main__":
    for name in filter(None, os.environ.get("BARE_IMPORTS", "").split(",")):
        importlib.import_module(name.strip())
    LanguageServer("bare-pygls", "0").start_io()
