"""The stand-in Moonshot API (tests, `--offline`, `kimi-lsp fake-api`): independent, it imports nothing else of
kimi_lsp."""

from kimi_lsp.fake.server import (FAULT_KINDS, HUGE_REPLY_LINES, FakeMoonshot, Fault, estimate_tokens, fake_content,
                                  main)

__all__ = ["FAULT_KINDS", "HUGE_REPLY_LINES", "FakeMoonshot", "Fault", "estimate_tokens", "fake_content", "main"]
