"""Shared fixtures.  Each real component has its own fixture module."""

pytest_plugins = [
    "tests.fixtures_kafka",
    "tests.fixtures_ray",
    "tests.fixtures_feast",
]
