import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path[:0] = [os.path.join(REPO, "clients", "python", "src"), os.path.join(REPO, "tests", "python")]

import pytest  # noqa: E402

import tidharness  # noqa: E402


@pytest.fixture(autouse=True)
def _stop_everything():
    yield
    tidharness.stop_all()
