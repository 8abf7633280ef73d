import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pytest  # noqa: E402

import faultlib  # noqa: E402


@pytest.fixture(scope="session")
def world():
    if not shutil.which(faultlib.STRACE) and not os.path.exists(faultlib.STRACE):
        pytest.fail("strace is missing (%s): install the Debian package strace "
                    "(apt-get install strace); the fault-injection suite needs it" % faultlib.STRACE)
    w = faultlib.make_world()
    yield w
    w.close()


_calls = {}


@pytest.fixture
def calls(world):
    """The enumerated calls of a command, by name (cached per session)."""
    def get(name):
        if name not in _calls:
            _calls[name] = faultlib.enumerate_calls(world, faultlib.BY_NAME[name])
        return _calls[name]
    return get
