"""`make run`'s database: `memanto-server local-postgres -- COMMAND`, and `migrate` on a Postgres without pgvector."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from memanto_server.lib.local_postgres import LocalPostgres
from tests.helpers.backends import RUN_ID

pytestmark = pytest.mark.slow

# The machine's own Postgres (15, without pgvector), when there is one: what an operator who
# points MEMANTO_DATABASE_URL at a server without pgvector sees.
PLAIN_POSTGRES = os.environ.get("MEMANTO_TEST_PLAIN_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")

PRINT_DATABASE = (
    "import asyncio, os, asyncpg\n"
    "async def main():\n"
    "    url = os.environ['MEMANTO_DATABASE_URL']\n"
    "    c = await asyncpg.connect(url.rsplit('/', 1)[0] + '/postgres')\n"
    "    print(url, await c.fetchval(\"SELECT default_version FROM pg_available_extensions WHERE name = 'vector'\"))\n"
    "    await c.close()\n"
    "asyncio.run(main())\n"
)


@pytest.fixture
def project() -> Iterator[Path]:
    """A project folder as a clone is (others may pass through; pytest's own folders are closed)."""
    root = Path(tempfile.mkdtemp(prefix="memanto-project-"))
    root.chmod(0o755)
    yield root
    pid_file = root / ".memanto-dev" / "postgres" / "data" / "postmaster.pid"
    assert not pid_file.exists(), "the local Postgres was left running"
    subprocess.run(["rm", "-rf", str(root)], check=False)


def local_postgres(cwd: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MEMANTO_DATABASE_URL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "memanto_server.cli.server", "local-postgres", "--", *command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_project_local_postgres_with_pgvector_serves_the_command_and_keeps_its_data(project: Path) -> None:
    first = local_postgres(project, sys.executable, "-c", PRINT_DATABASE)
    assert first.returncode == 0, first.stderr
    url, vector = first.stdout.split()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert url.endswith("/memanto")
    assert tuple(int(p) for p in vector.split(".")) >= (0, 8)
    assert "started" in first.stderr
    assert "stopped" in first.stderr
    assert (project / ".memanto-dev" / "postgres" / "data" / "PG_VERSION").exists()

    # Migrate into it, and find the data again in the next run.
    migrated = local_postgres(project, sys.executable, "-m", "memanto_server.cli.server", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    again = local_postgres(project, sys.executable, "-m", "memanto_server.cli.server", "migrate")
    assert "applied 0 migration" in again.stdout, again.stdout + again.stderr

    # The command's exit status is kept.
    assert local_postgres(project, sys.executable, "-c", "raise SystemExit(3)").returncode == 3


def test_a_running_local_postgres_is_reused(project: Path) -> None:
    server = LocalPostgres(project / ".memanto-dev" / "postgres")
    url = server.start()
    try:
        used = local_postgres(project, sys.executable, "-c", PRINT_DATABASE)
        assert used.returncode == 0, used.stderr
        assert used.stdout.split()[0] == f"{url}/memanto"
        assert "already running" in used.stderr
        assert server.running_port() is not None  # still running: it was not this command's to stop
    finally:
        server.stop()


def test_with_a_database_url_that_server_is_used(project: Path, postgres_server_url: str) -> None:
    given = f"{postgres_server_url}/memanto_given_{RUN_ID}"
    used = local_postgres(
        project,
        sys.executable,
        "-c",
        "import os; print(os.environ['MEMANTO_DATABASE_URL'])",
        env={"MEMANTO_DATABASE_URL": given},
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == given
    assert not (project / ".memanto-dev").exists()


async def test_migrate_on_a_postgres_without_pgvector_says_so_clearly(tmp_path: Path) -> None:
    try:
        admin = await asyncpg.connect(f"{PLAIN_POSTGRES}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError):
        pytest.skip("no Postgres without pgvector at " + PLAIN_POSTGRES)
    try:
        if await admin.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"):
            pytest.skip(f"the Postgres at {PLAIN_POSTGRES} has pgvector")
        name = f"memanto_novector_{RUN_ID}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMANTO_")}
        env["MEMANTO_DATABASE_URL"] = f"{PLAIN_POSTGRES}/{name}"
        result = subprocess.run(
            [sys.executable, "-m", "memanto_server.cli.server", "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "migration failed" in result.stderr
        assert "the extension 'vector' is not available on this server" in result.stderr
        assert "pgvector >= 0.8" in result.stderr
        assert "Traceback" not in result.stderr
        # Nothing was applied: the check comes before the first migration.
        conn = await asyncpg.connect(env["MEMANTO_DATABASE_URL"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
        finally:
            await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
