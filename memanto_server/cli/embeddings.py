"""`memanto-server worker` and `reembed`, and the embedding-model check before `serve` starts.

The embedding machinery (ONNX Runtime, the model, the worker) is imported by the command that
runs, not with the command line: `serve` with embeddings off never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import click

from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.settings import Settings, SettingsError

if TYPE_CHECKING:
    from memanto_server.embeddings.base import Embedder
    from memanto_server.embeddings.worker import EmbeddingWorker

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        click.echo(f"memanto-server: configuration error: {exc}", err=True)
        sys.exit(2)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, turning the failures an operator can fix into one line and an exit status."""
    from memanto_server.embeddings.base import EmbedderError
    from memanto_server.embeddings.service import ModelRefused

    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ModelRefused as exc:
        click.echo(f"memanto-server: the embedding model cannot be used: {exc}", err=True)
        sys.exit(4)
    except EmbedderError as exc:
        click.echo(f"memanto-server: embedder: {exc}", err=True)
        sys.exit(4)
    except (*OUTAGE_ERRORS, asyncpg.InvalidCatalogNameError) as exc:
        click.echo(f"memanto-server: cannot reach a backend: {type(exc).__name__}: {exc}", err=True)
        sys.exit(3)
    except asyncpg.UndefinedTableError as exc:
        click.echo(f"memanto-server: the database is not migrated ({exc}): run `memanto-server migrate`", err=True)
        sys.exit(3)


def _worker(settings: Settings, embedder: Embedder) -> EmbeddingWorker:
    from memanto_server.embeddings.worker import EmbeddingWorker

    return EmbeddingWorker(
        settings.database_url,
        embedder,
        batch_size=settings.embedding_batch_size,
        max_chars=settings.embedding_max_chars,
        poll_seconds=settings.embedding_poll_seconds,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


async def _embedder(settings: Settings) -> Embedder:
    from memanto_server.embeddings.factory import open_embedder

    embedder = await open_embedder(settings)
    if embedder is None:
        raise click.ClickException("MEMANTO_EMBEDDER is `none`: there is nothing to embed with")
    return embedder


def check_embedding_model(settings: Settings) -> None:
    """Before `serve` starts its workers: stop with a clear message on a model the database does
    not hold. Nothing is checked with embeddings off, nor when Postgres cannot be reached now."""
    if settings.embedder == "none":
        return
    from memanto_server.embeddings.service import check_model

    async def check() -> None:
        embedder = await _embedder(settings)
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=settings.db_connect_timeout)
        except (*OUTAGE_ERRORS, asyncpg.InvalidCatalogNameError):
            return  # the app starts without Postgres; its lifespan checks when it can
        try:
            await check_model(conn, embedder)
        finally:
            await conn.close()
            await embedder.close()

    _run(check)


@click.command("worker", help="Embed stored memories until stopped (SIGTERM/SIGINT): the embedding worker alone.")
def worker_command() -> None:
    from memanto_server.embeddings.service import check_model

    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def work() -> None:
        embedder = await _embedder(settings)
        conn = await asyncpg.connect(settings.database_url, timeout=settings.db_connect_timeout)
        try:
            await check_model(conn, embedder)
        finally:
            await conn.close()
        worker = _worker(settings, embedder)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker.start()
        click.echo(f"memanto-server: embedding worker running ({embedder.model_id})", err=True)
        try:
            await stop.wait()
        finally:
            await worker.stop()
            await embedder.close()

    _run(work)


@click.command("reembed", help="Embed every memory with the configured model and record it (resumable).")
@click.option("--force", is_flag=True, help="Embed everything again even if the model is the recorded one.")
def reembed_command(force: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from memanto_server.embeddings.service import reembed

    settings = _settings()

    async def work() -> int:
        embedder = await _embedder(settings)
        conn = await asyncpg.connect(settings.database_url, timeout=settings.db_connect_timeout)
        progress = Progress(
            TextColumn("embedding memories"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        task: list[Any] = []

        def started(total: int, embedded: int) -> None:
            task.append(progress.add_task("reembed", total=total, completed=embedded))

        def advanced(count: int) -> None:
            progress.advance(task[0], count)

        try:
            with progress:
                return await reembed(
                    conn, _worker(settings, embedder), embedder, force=force, on_start=started, on_batch=advanced
                )
        finally:
            with contextlib.suppress(*OUTAGE_ERRORS):
                await conn.close()
            await embedder.close()

    done = _run(work)
    click.echo(f"re-embedded {done} memories; every memory is embedded with the configured model")
