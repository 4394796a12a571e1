"""kimi-lsp: a language server that brings Moonshot's Kimi models into every LSP editor."""

__version__ = "0.1.0"
