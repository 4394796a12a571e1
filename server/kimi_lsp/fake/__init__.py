"""A faithful fake of Moonshot's Kimi HTTP API (tests, `--offline`, `kimi-lsp fake-api`), served on loopback.
Independent: it imports nothing else of kimi_lsp. `server` (FakeMoonshot, the CLI), `faults`, `replies`, `vision`,
`tools`, `prompt` (reading a request), `models` (the line-up and its rules), `limits` (rate-limit tiers),
`http` (the h11 plumbing)."""

from kimi_lsp.fake.faults import FAULT_KINDS, HUGE_REPLY_LINES, Fault
from kimi_lsp.fake.http import Recorded
from kimi_lsp.fake.models import RETIRED_MODEL_IDS
from kimi_lsp.fake.prompt import estimate_tokens
from kimi_lsp.fake.replies import fake_content, fake_reasoning
from kimi_lsp.fake.server import FakeMoonshot, default_models, main

__all__ = [
    "FAULT_KINDS",
    "HUGE_REPLY_LINES",
    "RETIRED_MODEL_IDS",
    "FakeMoonshot",
    "Fault",
    "Recorded",
    "default_models",
    "estimate_tokens",
    "fake_content",
    "fake_reasoning",
    "main",
]
