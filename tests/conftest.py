"""Every test starts with one torch thread: a CLI test that runs a command without --threads sets torch
to all cores for the rest of the process, and on a 2-core machine with anything else running the
tests after it then crawl (a 0.7 s test took 74 s)."""

import sys

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    yield
