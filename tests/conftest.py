"""Shared fixtures.  Each real component has its own fixture module."""

import pytest

pytest_plugins = [
    "tests.fixtures_kafka",
    "tests.fixtures_ray",
    "tests.fixtures_feast",
]


@pytest.fixture
def workers():
    """Worker subprocesses a test starts (tests/test_worker_kafka.py WorkerProc), stopped at its end."""
    started: list = []
    yield started
    for w in started:
        w.stop()
