import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
# This checkout's client and the shared harness, whatever is installed.
sys.path[:0] = [os.path.join(REPO, "clients", "python", "src"), os.path.join(REPO, "tests", "python")]

import pytest  # noqa: E402

import tidharness  # noqa: E402


@pytest.fixture(autouse=True)
def _clean():
    yield
    import tidstorage_client

    tidstorage_client.uninstall(timeout=1.0)
    tidharness.stop_all()
