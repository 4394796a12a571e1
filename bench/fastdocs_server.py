"""kimi-lsp with `kimi_lsp.documents.FastWorkspace` swapped in, for B6's before/after comparison.

The real server wires it with `documents.install(ls)` in its INITIALIZE handler; this launcher does the
equivalent without touching the server (pygls constructs `Workspace` by the name bound in this module), so
the benchmark can measure the change before and after the lead wires it in.
"""

import sys

import pygls.protocol.language_server as _language_server

from kimi_lsp.documents import FastWorkspace

if __name__ == "__main__":
    _language_server.Workspace = FastWorkspace
    from kimi_lsp.cli import main

    sys.exit(main())
