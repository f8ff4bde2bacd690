"""The `memanto-server` admin command line (issue 2, Set-up), against the real Postgres and Redis.

Commands run with the MEMANTO_* environment of this run's settings (and nothing else of the test
process's MEMANTO_* variables), in the folder a test names, through click's `CliRunner` in a thread
of their own (so `asyncio.run` inside a command never meets a test's loop). Where a process matters
the command runs in one: concurrent `migrate` processes, the revocation heard by an app under test,
and the installed console script.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.cli.server import main as server_cli
from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.backends import RUN_ID
from tests.helpers.cli_runner import run_in_process
from tests.helpers.http import API, assert_problem
from tests.helpers.processes import settings_env

REPO_ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS_DIR = REPO_ROOT / "memanto_server" / "migrations"
FIRST_MIGRATION = "0001_owners_agents_sessions_memories"
KEY_PATTERN = re.compile(r"mk_[A-Za-z0-9_-]{40,}")
DEV_KEY_FILE = Path(".memanto-dev") / "api_key"

_database_numbers = itertools.count()


class CreatedKey(msgspec.Struct, frozen=True):
    key_id: str
    owner_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One `memanto-server` command, as a shell in `cwd` with environment `env` would run it."""
    return run_in_process(server_cli, "memanto-server", args, env, unset=("MEMANTO_",), cwd=cwd)


def cli_process(env: dict[str, str], *args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One `memanto-server` command in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "memanto_server.cli.server", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def acli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command's process off the event loop, so an app under test keeps serving (and hearing Redis)
    meanwhile."""
    return await asyncio.to_thread(cli_process, env, *args, cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def last_line(text: str) -> str:
    lines = text.splitlines()
    assert lines, "no output"
    return lines[-1]


def labelled(text: str, label: str) -> str:
    """The value of a `label: value` line of the output."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == label:
            return value.strip()
    raise AssertionError(f"no {label!r} line in:\n{text}")


def create_key(env: dict[str, str], name: str, cwd: Path, owner_id: str | None = None) -> CreatedKey:
    args = ["keys", "create", "--name", name] + (["--owner", owner_id] if owner_id else [])
    result = ok(cli(env, *args, cwd=cwd))
    key = last_line(result.stdout)
    assert KEY_PATTERN.fullmatch(key), f"the last line is not a key alone: {key!r}"
    return CreatedKey(key_id=labelled(result.stdout, "key id"), owner_id=labelled(result.stdout, "owner id"), key=key)


def sha256(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def unique_name(prefix: str = "cli") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"  # short: `keys list` shows 20 characters of a name


def list_line(listing: str, key_id: str) -> str:
    lines = [line for line in listing.splitlines() if key_id in line]
    assert len(lines) == 1, f"{key_id} should be on exactly one line of:\n{listing}"
    return lines[0]


async def wait_for_status(
    client: AsyncTestClient[Any], headers: dict[str, str], status: int, within: float = 2.0
) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"{API}/agents", headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return settings_env(settings)


@pytest.fixture
async def new_database(postgres_server_url: str) -> AsyncIterator[Callable[[], str]]:
    """Names of databases that do not exist yet; whatever a test creates is dropped after it."""
    names: list[str] = []

    def make() -> str:
        name = f"memanto_cli_{RUN_ID}_{next(_database_numbers)}"
        names.append(name)
        return f"{postgres_server_url}/{name}"

    try:
        yield make
    finally:
        conn = await asyncpg.connect(f"{postgres_server_url}/postgres")
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def database_exists(url: str) -> bool:
    conn = await asyncpg.connect(f"{url.rsplit('/', 1)[0]}/postgres")
    try:
        return bool(
            await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", url.rsplit("/", 1)[1])
        )
    finally:
        await conn.close()


async def applied_versions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


async def table_exists(url: str, table: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)  # type: ignore[no-any-return]
    finally:
        await conn.close()


def migration_versions(directory: Path = MIGRATIONS_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.sql"))


# --- migrate --------------------------------------------------------------------------------------------------


async def test_migrate_creates_the_database_and_applies_migrations_once(
    env: dict[str, str], new_database: Callable[[], str], tmp_path: Path
) -> None:
    url = new_database()
    assert not await database_exists(url)
    env["MEMANTO_DATABASE_URL"] = url

    first = ok(cli(env, "migrate", cwd=tmp_path))
    assert await database_exists(url)
    assert await applied_versions(url) == migration_versions()
    assert FIRST_MIGRATION in first.stdout
    assert re.search(rf"applied {len(migration_versions())} migration", first.stdout), first.stdout
    for table in ("owners", "api_keys", "agents", "sessions"):
        assert await table_exists(url, table), table

    second = ok(cli(env, "migrate", cwd=tmp_path))
    assert "applied 0 migration" in second.stdout
    assert await applied_versions(url) == migration_versions()


async def test_concurrent_migrate_processes_all_succeed_and_apply_each_migration_once(
    env: dict[str, str], new_database: Callable[[], str], tmp_path: Path
) -> None:
    url = new_database()
    env["MEMANTO_DATABASE_URL"] = url
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "memanto_server.cli.server", "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"exit {process.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"

    conn = await asyncpg.connect(url)
    try:
        counts = {
            row["version"]: row["n"]
            for row in await conn.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
        }
    finally:
        await conn.close()
    assert counts == dict.fromkeys(migration_versions(), 1)
    # Between them the four runs applied each migration exactly once.
    applied = [stdout for stdout, _ in outputs if FIRST_MIGRATION in stdout]
    assert len(applied) == 1, outputs


async def test_a_changed_applied_migration_stops_the_run(
    env: dict[str, str], new_database: Callable[[], str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    url = new_database()
    env["MEMANTO_DATABASE_URL"] = url
    env["MEMANTO_MIGRATIONS_DIR"] = str(directory)
    ok(cli(env, "migrate", cwd=tmp_path))
    conn = await asyncpg.connect(url)
    try:
        checksum_before = await conn.fetchval(
            "SELECT checksum FROM schema_migrations WHERE version = $1", FIRST_MIGRATION
        )
    finally:
        await conn.close()

    edited = directory / f"{FIRST_MIGRATION}.sql"
    edited.write_text(edited.read_text() + "\n-- an edit after the fact\n")
    (directory / "9999_later.sql").write_text("CREATE TABLE cli_later (id int);\n")
    result = cli(env, "migrate", cwd=tmp_path)

    assert result.returncode != 0, result.stdout
    assert "changed" in result.stderr
    assert edited.name in result.stderr
    assert "Traceback" not in result.stderr
    conn = await asyncpg.connect(url)
    try:
        assert (
            await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = $1", FIRST_MIGRATION)
            == checksum_before
        )
    finally:
        await conn.close()
    assert not await table_exists(url, "cli_later"), "nothing may be applied after a changed migration"
    assert await applied_versions(url) == migration_versions(MIGRATIONS_DIR)


async def test_a_new_migration_is_applied_and_a_failing_one_rolls_back(
    env: dict[str, str], new_database: Callable[[], str], tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    url = new_database()
    env["MEMANTO_DATABASE_URL"] = url
    env["MEMANTO_MIGRATIONS_DIR"] = str(directory)
    ok(cli(env, "migrate", cwd=tmp_path))

    (directory / "9998_extra.sql").write_text("CREATE TABLE cli_extra (id int);\n")
    added = ok(cli(env, "migrate", cwd=tmp_path))
    assert "applied 1 migration" in added.stdout
    assert "9998_extra" in added.stdout
    assert await table_exists(url, "cli_extra")

    broken = directory / "9999_broken.sql"
    broken.write_text("CREATE TABLE cli_half (id int);\nTHIS IS NOT SQL;\n")
    failed = cli(env, "migrate", cwd=tmp_path)
    assert failed.returncode != 0, failed.stdout
    assert not await table_exists(url, "cli_half"), "a failing migration must leave nothing behind"
    assert "9999_broken" not in await applied_versions(url)

    broken.write_text("CREATE TABLE cli_half (id int);\n")
    ok(cli(env, "migrate", cwd=tmp_path))
    assert await applied_versions(url) == [*migration_versions(MIGRATIONS_DIR), "9998_extra", "9999_broken"]


async def test_migrate_with_a_bad_setting_names_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    env["MEMANTO_DATABASE_URL"] = "mysql://x"
    result = cli(env, "migrate", cwd=tmp_path)
    assert result.returncode != 0
    assert "MEMANTO_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_migrate_with_postgres_unreachable_fails_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    env["MEMANTO_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/memanto"
    result = cli(env, "migrate", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


# --- keys create ----------------------------------------------------------------------------------------------


async def test_keys_create_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(
    env: dict[str, str], settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    name = unique_name()
    result = ok(cli(env, "keys", "create", "--name", name, cwd=tmp_path))
    key = last_line(result.stdout)
    assert key.startswith("mk_")
    assert KEY_PATTERN.fullmatch(key), f"the last line must be the key alone: {key!r}"
    assert result.stdout.count(key) == 1, "the key is shown once"
    assert key not in result.stderr
    key_id = labelled(result.stdout, "key id")

    row = await db.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    assert row is not None
    assert bytes(row["key_hash"]) == sha256(key)
    for column, value in row.items():
        text = bytes(value).decode("latin-1") if isinstance(value, bytes) else str(value)
        assert key not in text, f"api_keys.{column} holds the key"
        assert key[3:] not in text, f"api_keys.{column} holds the key's secret part"
    assert await db.fetchval("SELECT name FROM owners WHERE owner_id = $1", row["owner_id"]) == name
    assert str(row["owner_id"]) == labelled(result.stdout, "owner id")

    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        assert response.json()["agents"] == []
        wrong = await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {key[:-1]}x"})
        assert_problem(wrong, 401, "invalid_api_key")


async def test_keys_create_with_owner_adds_a_second_key_to_that_owner(
    env: dict[str, str], settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    first = create_key(env, unique_name(), tmp_path)
    second = create_key(env, unique_name(), tmp_path, owner_id=first.owner_id)
    stranger = create_key(env, unique_name(), tmp_path)
    assert second.owner_id == first.owner_id
    assert second.key != first.key
    assert second.key_id != first.key_id
    assert stranger.owner_id != first.owner_id
    owners = await db.fetch(
        "SELECT key_id, owner_id::text AS owner_id FROM api_keys WHERE key_id = ANY($1::text[])",
        [first.key_id, second.key_id],
    )
    assert {row["owner_id"] for row in owners} == {first.owner_id}
    assert len(owners) == 2

    agent = unique_name("agent")
    async with AsyncTestClient(app=create_app(settings)) as client:
        created = await client.post(f"{API}/agents", json={"agent_id": agent}, headers=first.headers)
        assert created.status_code == 201, created.text
        seen_by_second = await client.get(f"{API}/agents", headers=second.headers)
        assert seen_by_second.status_code == 200, seen_by_second.text
        assert [a["agent_id"] for a in seen_by_second.json()["agents"]] == [agent]
        assert (await client.get(f"{API}/agents/{agent}", headers=second.headers)).status_code == 200
        seen_by_stranger = await client.get(f"{API}/agents", headers=stranger.headers)
        assert seen_by_stranger.json()["agents"] == []


@pytest.mark.parametrize("owner_id", [str(uuid.uuid4()), "not-an-owner-id"], ids=["unknown-uuid", "malformed"])
async def test_keys_create_for_an_unknown_owner_fails_and_creates_nothing(
    env: dict[str, str], db: asyncpg.Connection[Any], tmp_path: Path, owner_id: str
) -> None:
    name = unique_name()
    result = cli(env, "keys", "create", "--name", name, "--owner", owner_id, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "mk_" not in result.stdout
    assert owner_id in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE name = $1", name) == 0
    assert await db.fetchval("SELECT count(*) FROM owners WHERE name = $1", name) == 0


# --- keys list and revoke -------------------------------------------------------------------------------------


async def test_keys_list_shows_id_and_name_but_never_the_key(env: dict[str, str], tmp_path: Path) -> None:
    name = unique_name()
    created = create_key(env, name, tmp_path)
    listing = ok(cli(env, "keys", "list", cwd=tmp_path)).stdout
    line = list_line(listing, created.key_id)
    assert name in line
    assert created.owner_id in line
    assert "active" in line
    assert "revoked" not in line
    assert created.key not in listing
    assert created.key[:16] not in listing, "the listing shows more of the key than a short prefix"


async def test_keys_revoke_stops_the_key_at_once(
    env: dict[str, str], settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    created = create_key(env, unique_name(), tmp_path)
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert await client.app.state.services.keys.wait_subscribed(5), "the app never heard Redis"
        # Twice: the second answer may come from the app's key cache, which revocation must clear.
        for _ in range(2):
            response = await client.get(f"{API}/agents", headers=created.headers)
            assert response.status_code == 200, response.text

        revoked = ok(await acli(env, "keys", "revoke", created.key_id, cwd=tmp_path))
        assert created.key_id in revoked.stdout
        response = await wait_for_status(client, created.headers, 401)
        assert_problem(response, 401, "invalid_api_key")

    assert await db.fetchval("SELECT revoked_at FROM api_keys WHERE key_id = $1", created.key_id) is not None
    line = list_line(ok(cli(env, "keys", "list", cwd=tmp_path)).stdout, created.key_id)
    assert "revoked" in line
    assert "active" not in line

    async with AsyncTestClient(app=create_app(settings)) as fresh:
        assert_problem(await fresh.get(f"{API}/agents", headers=created.headers), 401, "invalid_api_key")

    again = cli(env, "keys", "revoke", created.key_id, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr


async def test_revoking_one_key_leaves_the_owners_other_key_working(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    first = create_key(env, unique_name(), tmp_path)
    second = create_key(env, unique_name(), tmp_path, owner_id=first.owner_id)
    ok(cli(env, "keys", "revoke", first.key_id, cwd=tmp_path))
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert_problem(await client.get(f"{API}/agents", headers=first.headers), 401, "invalid_api_key")
        assert (await client.get(f"{API}/agents", headers=second.headers)).status_code == 200


async def test_revoking_an_unknown_key_fails(env: dict[str, str], tmp_path: Path) -> None:
    key_id = f"key_{secrets.token_hex(8)}"
    result = cli(env, "keys", "revoke", key_id, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert key_id in result.stderr
    assert "Traceback" not in result.stderr


# --- keys dev -------------------------------------------------------------------------------------------------


async def test_keys_dev_creates_keeps_and_replaces_a_development_key(
    env: dict[str, str], settings: Settings, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    key_file = tmp_path / DEV_KEY_FILE
    assert not key_file.exists()

    first = last_line(ok(cli(env, "keys", "dev", cwd=tmp_path)).stdout)
    assert KEY_PATTERN.fullmatch(first), first
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE key_hash = $1", sha256(first)) == 1

    again = last_line(ok(cli(env, "keys", "dev", cwd=tmp_path)).stdout)
    assert again == first

    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {first}"})
        assert response.status_code == 200, response.text

    key_id = await db.fetchval("SELECT key_id FROM api_keys WHERE key_hash = $1", sha256(first))
    ok(cli(env, "keys", "revoke", key_id, cwd=tmp_path))
    replaced = last_line(ok(cli(env, "keys", "dev", cwd=tmp_path)).stdout)
    assert KEY_PATTERN.fullmatch(replaced), replaced
    assert replaced != first
    assert key_file.read_text().strip() == replaced
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {replaced}"})
        assert response.status_code == 200, response.text
        assert_problem(
            await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {first}"}), 401, "invalid_api_key"
        )


async def test_keys_dev_refuses_production(env: dict[str, str], tmp_path: Path) -> None:
    env["MEMANTO_ENV"] = "production"
    result = cli(env, "keys", "dev", cwd=tmp_path)
    assert result.returncode != 0
    assert "mk_" not in result.stdout
    assert not (tmp_path / DEV_KEY_FILE).exists()


# --- help -----------------------------------------------------------------------------------------------------


def test_serve_help_lists_host_port_and_workers(env: dict[str, str], tmp_path: Path) -> None:
    result = ok(cli(env, "serve", "--help", cwd=tmp_path))
    for option in ("--host", "--port", "--workers"):
        assert option in result.stdout


def test_the_console_script_is_installed(env: dict[str, str], tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "memanto-server"
    assert script.is_file(), f"no console script at {script}"
    top = subprocess.run(
        [str(script), "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert top.returncode == 0, top.stderr
    for command in ("serve", "migrate", "keys"):
        assert command in top.stdout
    keys = subprocess.run(
        [str(script), "keys", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert keys.returncode == 0, keys.stderr
    for command in ("create", "list", "revoke"):
        assert command in keys.stdout
