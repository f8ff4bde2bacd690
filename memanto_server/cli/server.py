"""`memanto-server`: the admin command line (serve, migrate, keys, worker, reembed, local-postgres).

Each command imports the machinery it needs when it runs: `serve`'s supervisor process, a
`migrate` or a `--help` does not load the app, the key store or the embedding model.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

import asyncpg
import click

from memanto_server.cli.embeddings import check_embedding_model, reembed_command, worker_command
from memanto_server.cli.local_postgres import local_postgres_command
from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.migrations import MigrationError, migrate
from memanto_server.settings import Settings, SettingsError

if TYPE_CHECKING:
    from memanto_server.auth.repository import ApiKeyRepository

T = TypeVar("T")

DEV_KEY_FILE = Path(".memanto-dev/api_key")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        click.echo(f"memanto-server: configuration error: {exc}", err=True)
        sys.exit(2)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except MigrationError as exc:
        click.echo(f"memanto-server: migration failed: {exc}", err=True)
        sys.exit(1)
    except (*OUTAGE_ERRORS, asyncpg.InvalidCatalogNameError) as exc:
        click.echo(f"memanto-server: cannot reach a backend: {type(exc).__name__}: {exc}", err=True)
        sys.exit(3)


async def _with_repository(settings: Settings, use: Callable[[ApiKeyRepository], Awaitable[T]]) -> T:
    from memanto_server.auth.repository import ApiKeyRepository
    from memanto_server.lib.db import Database

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2, timeout=settings.db_connect_timeout)
    try:
        return await use(ApiKeyRepository(Database(pool, settings.db_acquire_timeout)))
    finally:
        await pool.close()


async def _create_key(repository: ApiKeyRepository, name: str, owner_id: str | None) -> tuple[str, str, str]:
    from memanto_server.auth.keys import display_prefix, generate_api_key, hash_api_key, new_key_id

    if owner_id is None:
        owner_id = await repository.create_owner(name)
    elif not _is_uuid(owner_id) or not await repository.owner_exists(owner_id):
        raise click.ClickException(f"no owner {owner_id}")
    key, key_id = generate_api_key(), new_key_id()
    await repository.create_key(
        key_id=key_id, owner_id=owner_id, name=name, key_hash=hash_api_key(key), prefix=display_prefix(key)
    )
    return key_id, owner_id, key


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


@click.group(help="Memanto server administration.")
def main() -> None:
    pass


@main.command(help="Serve the HTTP API with uvicorn.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--graceful-timeout", default=30, show_default=True, type=int, help="Seconds to finish in-flight work.")
@click.option(
    "--max-header-bytes",
    type=click.IntRange(1024),
    help="Largest request line and headers, bytes (MEMANTO_HTTP_MAX_HEADER_BYTES, 16384); larger: 431.",
)
@click.option(
    "--max-headers",
    type=click.IntRange(1),
    help="Most headers of a request (MEMANTO_HTTP_MAX_HEADERS, 100); more: 431.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.001, 86_400),
    help="Seconds to send a request's headers (MEMANTO_HTTP_HEADER_TIMEOUT, 10); slower: 408, closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.001, 86_400),
    help="Seconds to send a request's body after its headers (MEMANTO_HTTP_BODY_TIMEOUT, 30); slower: 408, closed.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.IntRange(1, 3600),
    help="Seconds an idle connection stays open between requests (MEMANTO_HTTP_KEEP_ALIVE_TIMEOUT, 5).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    graceful_timeout: int,
    max_header_bytes: int | None,
    max_headers: int | None,
    header_timeout: float | None,
    body_timeout: float | None,
    keep_alive_timeout: int | None,
) -> None:
    import uvicorn

    from memanto_server.lib.http_protocol import ConnectionLimits, LimitedHttpToolsProtocol
    from memanto_server.ops.metrics import prepare_multiprocess_dir, remove_multiprocess_dir

    settings = _settings()  # refuse to start on a bad setting, before any worker exists
    limits = ConnectionLimits(
        max_header_bytes=max_header_bytes or settings.http_max_header_bytes,
        max_headers=max_headers or settings.http_max_headers,
        header_timeout=header_timeout or settings.http_header_timeout,
        body_timeout=body_timeout or settings.http_body_timeout,
    )
    check_embedding_model(settings)  # and on an embedding model the database does not hold
    metrics_dir = prepare_multiprocess_dir(workers)  # before the workers start: they inherit it
    if metrics_dir is not None:
        click.echo(f"memanto-server: {workers} workers share metrics through {metrics_dir}", err=True)
    try:
        uvicorn.run(
            "memanto_server.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            # httptools, with the limits uvicorn has no setting for (a partial: workers get it pickled).
            http=functools.partial(LimitedHttpToolsProtocol, limits=limits),
            timeout_keep_alive=keep_alive_timeout or settings.http_keep_alive_timeout,
            access_log=False,
            log_config=None,
            proxy_headers=True,
            server_header=False,
            timeout_graceful_shutdown=graceful_timeout,
            log_level=settings.log_level.lower(),
        )
    finally:
        remove_multiprocess_dir(metrics_dir)


@main.command("migrate", help="Create the database if missing and apply pending migrations.")
def migrate_command() -> None:
    settings = _settings()
    applied = _run(lambda: migrate(settings.database_url))
    click.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))


@main.group(help="API keys: create, list, revoke.")
def keys() -> None:
    pass


@keys.command("create", help="Create an API key (printed once, alone on the last line).")
@click.option("--name", required=True, help="A name for the key (and for its owner when new).")
@click.option("--owner", "owner_id", default=None, help="Add the key to this existing owner id.")
def keys_create(name: str, owner_id: str | None) -> None:
    settings = _settings()
    key_id, owner, key = _run(lambda: _with_repository(settings, lambda r: _create_key(r, name, owner_id)))
    click.echo(f"key id:   {key_id}")
    click.echo(f"owner id: {owner}")
    click.echo("Store this key now; it is shown only once:")
    click.echo(key)


@keys.command("list", help="List API keys (never the keys themselves).")
def keys_list() -> None:
    settings = _settings()
    records = _run(lambda: _with_repository(settings, lambda r: r.list_keys()))
    click.echo(f"{'KEY ID':<22} {'PREFIX':<10} {'NAME':<20} {'OWNER ID':<37} {'CREATED':<21} STATUS")
    for rec in records:
        status = f"revoked {rec.revoked_at}" if rec.revoked_at else "active"
        prefix = rec.prefix + "…"
        click.echo(
            f"{rec.key_id:<22} {prefix:<10} {rec.name[:20]:<20} {rec.owner_id:<37} {rec.created_at:<21} {status}"
        )


@keys.command("revoke", help="Revoke an API key; every server instance stops accepting it at once.")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    from memanto_server.auth.cache import publish_revocation
    from memanto_server.lifespan import redis_from

    settings = _settings()

    async def revoke(repository: ApiKeyRepository) -> bool:
        if not await repository.exists(key_id):
            raise click.ClickException(f"no API key {key_id}")
        changed = await repository.revoke(key_id)
        redis = redis_from(settings)
        try:
            await publish_revocation(redis, settings.redis_prefix, key_id)
        finally:
            await redis.aclose()
        return changed

    changed = _run(lambda: _with_repository(settings, revoke))
    click.echo(f"revoked {key_id}" if changed else f"{key_id} was already revoked")


@keys.command("dev", help="Development only: make sure a local API key exists and print it.")
def keys_dev() -> None:
    from memanto_server.auth.keys import hash_api_key

    settings = _settings()
    if settings.is_production:
        raise click.ClickException("`keys dev` is for development; use `keys create` in production")

    kept = DEV_KEY_FILE.read_text().strip() if DEV_KEY_FILE.exists() else None

    async def ensure(repository: ApiKeyRepository) -> tuple[str, bool]:
        if kept and await repository.find_active(hash_api_key(kept)) is not None:
            return kept, False
        _, _, key = await _create_key(repository, "development", None)
        return key, True

    key, created = _run(lambda: _with_repository(settings, ensure))
    if created:
        DEV_KEY_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(DEV_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
    click.echo(f"Development API key (kept in {DEV_KEY_FILE}):")
    click.echo(key)


main.add_command(worker_command)
main.add_command(reembed_command)
main.add_command(local_postgres_command)


if __name__ == "__main__":
    main()
