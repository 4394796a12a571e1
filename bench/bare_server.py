"""B1's baseline: a bare pygls server that only answers `initialize` (and pygls' built-in shutdown/exit).

Same interpreter, same pygls and lsprotocol as kimi-lsp, nothing else imported: the floor any pygls server pays.
"""

from pygls.lsp.server import LanguageServer

if __name__ == "__main__":
    LanguageServer("bare-pygls", "0").start_io()
