import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import httpx

from harness import FAKE_KEY, PROFILES
from kimi_lsp.fake import FakeMoonshot


@pytest.fixture(scope="session")
def fake_server():
    fake = FakeMoonshot().start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture
def fake(fake_server):
    """The session's fake Moonshot server, with its requests, faults and settings reset."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def client(fake):
    """A plain HTTP client for the fake, with the key it accepts."""
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=5) as c:
        yield c


@pytest.fixture(params=PROFILES)
def profile(request):
    """Each end-to-end test that takes it runs as VS Code and as Neovim."""
    return request.param
