"""`memanto export` and `memanto import`: an agent's memories as JSON Lines, out and back in.

An import is resumable: each line carries an idempotency key (`import:` + its exported
memory_id, else a hash of the line), so running the same import again stores only what
was not stored yet, and the server's batch answer says how many were new and how many
were stored already.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memanto_server.cli.memanto.errors import EXIT_SERVER_SAID_NO, EXIT_UNREACHABLE, CliFailure
from memanto_server.cli.memanto.output import emit, err, notice
from memanto_server.cli.memanto.state import agent_option, json_option, state
from memanto_server.client import AgentHandle, ConnectionFailedError, MemantoError
from memanto_server.memories.schemas import MAX_BATCH

EXPORT_FIELDS = ("memory_id", "content", "type", "title", "tags", "confidence", "source", "metadata", "created_at")
IMPORT_FIELDS = ("content", "type", "title", "tags", "confidence", "source", "metadata")
MAX_IDEMPOTENCY_KEY = 200
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


# --------------------------------------------------------------------------- export


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@agent_option
@json_option
def export(file: Path, agent_id: str | None) -> None:
    """Write the agent's memories to FILE as JSON Lines, one memory per line (`-`: stdout)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    count = 0
    with st.session(agent_id) as handle, _output(file) as sink:
        for record in handle.iter_memories():
            line = {name: getattr(record, name) for name in EXPORT_FIELDS}
            sink.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    if str(file) == "-":
        return
    if st.json:
        emit({"agent_id": agent_id, "file": str(file), "exported": count})
        return
    click.echo(f"✓ Exported {count} memor{'y' if count == 1 else 'ies'} of agent '{agent_id}' to {file}")


@contextlib.contextmanager
def _output(file: Path) -> Iterator[IO[str]]:
    """stdout for `-`; otherwise a temporary file that replaces FILE only when complete."""
    if str(file) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    folder = file.resolve().parent
    fd, temporary = tempfile.mkstemp(prefix=f".{file.name}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as sink:
            yield sink
        os.chmod(temporary, 0o644 & ~_umask())
        os.replace(temporary, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- import


class ImportItem(msgspec.Struct, kw_only=True):
    line_number: int
    memory: dict[str, Any]


class ImportCounts(msgspec.Struct, kw_only=True):
    """What the server said of the batches sent so far."""

    stored: int = 0  # new memories
    already_stored: int = 0  # lines whose idempotency key the agent had seen: not stored again


def read_import_file(file: Path) -> list[ImportItem]:
    """Every memory of FILE, each with its idempotency key; any unreadable line stops the import before it starts."""
    items: list[ImportItem] = []
    stream = sys.stdin if str(file) == "-" else file.open(encoding="utf-8")
    try:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if line:
                items.append(ImportItem(line_number=number, memory=_import_memory(file, number, line)))
    except UnicodeDecodeError as exc:
        raise CliFailure(f"{file} is not UTF-8 text: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return items


def _import_memory(file: Path, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise CliFailure(f"{file}, line {number}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        raise CliFailure(f'{file}, line {number}: expected a JSON object with a "content" string')
    memory = {name: data[name] for name in IMPORT_FIELDS if data.get(name) is not None}
    memory["idempotency_key"] = import_key(data, line)
    return memory


def import_key(data: dict[str, Any], line: str) -> str:
    """`import:<exported memory_id>`, else `import:<sha256 of the line>`: the same line never stores twice."""
    memory_id = data.get("memory_id")
    if isinstance(memory_id, str) and memory_id and len(memory_id) <= MAX_IDEMPOTENCY_KEY - len("import:"):
        return f"import:{memory_id}"
    return "import:" + hashlib.sha256(line.encode("utf-8")).hexdigest()


def _store_batch(handle: AgentHandle, batch: list[ImportItem], counts: ImportCounts) -> None:
    """Send one batch and count the server's answer; a refusal names the lines it was about."""
    try:
        result = handle.batch_remember([item.memory for item in batch])
    except MemantoError as exc:
        first, last = batch[0].line_number, batch[-1].line_number
        lines_span = f"line {first}" if first == last else f"lines {first}-{last}"
        raise CliFailure(
            f"{exc.detail} ({exc.code or exc.status}) in {lines_span}; "
            f"{counts.stored} stored before it, {counts.already_stored} already stored",
            EXIT_UNREACHABLE if isinstance(exc, ConnectionFailedError) else EXIT_SERVER_SAID_NO,
            "fix the file and run the same import again: what is stored is skipped",
        ) from exc
    counts.stored += result.stored
    counts.already_stored += result.already_stored


def import_summary(agent_id: str, counts: ImportCounts) -> str:
    """`✓ Imported into agent 'a': 0 new, 7 already stored`: the server's counts, not the file's lines."""
    return f"✓ Imported into agent '{agent_id}': {counts.stored} new, {counts.already_stored} already stored"


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--batch-size", type=click.IntRange(1, MAX_BATCH), default=MAX_BATCH, show_default=True, help="Memories a request."
)
@agent_option
@json_option
def import_(file: Path, batch_size: int, agent_id: str | None) -> None:
    """Store the memories of a JSON Lines FILE (as `export` writes it) in the agent.

    Resumable: each line carries an idempotency key (`import:` + its exported memory_id,
    else a hash of the line), so running the same import again after an interruption
    stores only what was not stored yet.
    """
    st = state()
    agent_id = st.resolve_agent(agent_id)
    items = read_import_file(file)
    counts = ImportCounts()
    # Notices during the import (a session activated or renewed) go through the progress
    # display's own console (`err`), which prints them above the bar.
    progress = Progress(
        TextColumn("Importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=st.json or not items,
        transient=False,
    )
    try:
        with st.session(agent_id) as handle, progress:
            task = progress.add_task("import", total=len(items))
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                _store_batch(handle, batch, counts)
                progress.advance(task, len(batch))
    except KeyboardInterrupt:
        done = counts.stored + counts.already_stored
        notice(f"Interrupted after {done} of {len(items)}; run the same import again to resume.")
        sys.exit(EXIT_INTERRUPTED)
    if st.json:
        summary = {"agent_id": agent_id, "file": str(file), "total": len(items)}
        emit({**summary, "stored": counts.stored, "already_stored": counts.already_stored})
        return
    click.echo(import_summary(agent_id, counts))
