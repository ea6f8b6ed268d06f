import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import MockProcess  # noqa: E402


@pytest.fixture(scope="session")
def mock():
    m = MockProcess()
    yield m
    m.stop()
