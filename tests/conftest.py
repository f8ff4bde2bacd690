"""Test harness: real Postgres and Redis, a database and key prefix of this run's own.

Fixtures live in `tests/fixtures/` by kind and are shared through `pytest_plugins`;
plain helpers live in `tests/helpers/` by purpose.
"""

import pytest

pytest_plugins = [
    "tests.fixtures.backends",
    "tests.fixtures.app",
    "tests.fixtures.owners",
    "tests.fixtures.servers",
    "tests.fixtures.memanto_package",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests (servers, processes, faults) first: `make test` hands whole files to
    its workers in this order, and a long file handed out last would keep one worker busy after
    the others are done; the many short files fill in at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file's order is kept
