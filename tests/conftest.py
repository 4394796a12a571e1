import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kimi_lsp.fake import FakeMoonshot  # noqa: E402


@pytest.fixture(scope="session")
def fake_server():
    fake = FakeMoonshot().start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    return fake_server
