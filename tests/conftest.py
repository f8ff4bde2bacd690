"""Test harness: real Postgres and Redis, a database and key prefix of this run's own.

Fixtures live in `tests/fixtures/` by kind and are shared through `pytest_plugins`;
plain helpers live in `tests/helpers/` by purpose.
"""

pytest_plugins = [
    "tests.fixtures.backends",
    "tests.fixtures.app",
    "tests.fixtures.owners",
    "tests.fixtures.servers",
    "tests.fixtures.memanto_package",
]
