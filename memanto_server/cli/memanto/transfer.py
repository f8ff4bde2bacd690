"""`memanto export` and `memanto import`: an agent's memories as JSON Lines, out and back in.

An import is resumable: each line carries an idempotency key (`import:` + its exported
memory_id, else a hash of the line), so running the same import again stores only what
was not stored yet, and the server's batch answer says how many were new and how many
were stored already.

Dates travel with the memories: a line's `occurred_at` (else its `created_at`: a memory is
about the time it was stored unless it says otherwise) is the imported memory's
`occurred_at`, and the time it stopped holding — the earlier of its `valid_until` and its
`expired_at` — becomes its `valid_until`. So an expired memory arrives expired at the time
it expired, and "what did the agent know at T" has the same answer in the new agent as in
the old one. An expiry's reason can only be given by expiring the memory: a line with one is
expired again after it is stored (expiring an expired memory changes nothing, so a repeated
import leaves it as it is).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
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

EXPORT_FIELDS = (
    "memory_id",
    "content",
    "type",
    "title",
    "tags",
    "confidence",
    "source",
    "metadata",
    "created_at",
    "occurred_at",
    "valid_until",
    "expired_at",
    "expired_reason",
    "status",
)
IMPORT_FIELDS = ("content", "type", "title", "tags", "confidence", "source", "metadata")
MAX_IDEMPOTENCY_KEY = 200
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


# --------------------------------------------------------------------------- export


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@agent_option
@json_option
def export(file: Path, agent_id: str | None) -> None:
    """Write the agent's memories to FILE as JSON Lines, one memory per line (`-`: stdout).

    Expired memories too, each with its dates: occurred_at, valid_until,
    expired_at, expired_reason and status.
    """
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
    # Expire the memory once stored, with this reason (None: no reason): a line expired by hand
    # with a reason, or said to be expired without a time.
    expire: bool = False
    expire_reason: str | None = None


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
                items.append(_import_memory(file, number, line))
    except UnicodeDecodeError as exc:
        raise CliFailure(f"{file} is not UTF-8 text: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return items


def _import_memory(file: Path, number: int, line: str) -> ImportItem:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise CliFailure(f"{file}, line {number}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        raise CliFailure(f'{file}, line {number}: expected a JSON object with a "content" string')
    memory = {name: data[name] for name in IMPORT_FIELDS if data.get(name) is not None}
    memory["idempotency_key"] = import_key(data, line)
    item = ImportItem(line_number=number, memory=memory)
    _import_dates(item, data, f"{file}, line {number}")
    return item


def _readable_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO-8601 string (UTC when it has no offset); None when it is not one."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _time(data: dict[str, Any], name: str, where: str) -> datetime | None:
    value = data.get(name)
    moment = _readable_time(value)
    if value is not None and moment is None:
        raise CliFailure(f"{where}: {name} is not an ISO-8601 time ({value!r})")
    return moment


def _import_dates(item: ImportItem, data: dict[str, Any], where: str) -> None:
    """The line's dates on its memory: the time it is about, and when it stopped (or stops) holding."""
    # Without an occurred_at, a memory is about when it was stored: the line's created_at, when
    # that is a time at all (it never was an import field, so a file of another system may say anything).
    occurred_at = _time(data, "occurred_at", where) or _readable_time(data.get("created_at"))
    expired_at = _time(data, "expired_at", where)
    ends = [moment for moment in (_time(data, "valid_until", where), expired_at) if moment is not None]
    if occurred_at is not None:
        item.memory["occurred_at"] = occurred_at
    if ends:
        item.memory["valid_until"] = min(ends)
    reason = data.get("expired_reason")
    reason = reason if isinstance(reason, str) and reason else None
    said_expired = expired_at is not None or data.get("status") == "expired"
    # Only expiring gives a reason; and a line said to be expired with no time must be expired now.
    if said_expired and (reason is not None or not ends):
        item.expire = True
        item.expire_reason = reason


def import_key(data: dict[str, Any], line: str) -> str:
    """`import:<exported memory_id>`, else `import:<sha256 of the line>`: the same line never stores twice."""
    memory_id = data.get("memory_id")
    if isinstance(memory_id, str) and memory_id and len(memory_id) <= MAX_IDEMPOTENCY_KEY - len("import:"):
        return f"import:{memory_id}"
    return "import:" + hashlib.sha256(line.encode("utf-8")).hexdigest()


def _refused(exc: MemantoError, batch: list[ImportItem], counts: ImportCounts) -> CliFailure:
    """A refusal of the server, naming the lines it was about and what was stored before it."""
    first, last = batch[0].line_number, batch[-1].line_number
    lines_span = f"line {first}" if first == last else f"lines {first}-{last}"
    return CliFailure(
        f"{exc.detail} ({exc.code or exc.status}) in {lines_span}; "
        f"{counts.stored} stored before it, {counts.already_stored} already stored",
        EXIT_UNREACHABLE if isinstance(exc, ConnectionFailedError) else EXIT_SERVER_SAID_NO,
        "fix the file and run the same import again: what is stored is skipped",
    )


def _store_batch(handle: AgentHandle, batch: list[ImportItem], counts: ImportCounts) -> None:
    """Send one batch and count the server's answer; then expire the memories said to be expired
    with a reason (a repeated import expires them again, which changes nothing)."""
    try:
        result = handle.batch_remember([item.memory for item in batch])
    except MemantoError as exc:
        raise _refused(exc, batch, counts) from exc
    counts.stored += result.stored
    counts.already_stored += result.already_stored
    for item, memory_id in zip(batch, result.memory_ids, strict=True):
        if item.expire:
            try:
                handle.expire(memory_id, item.expire_reason)
            except MemantoError as exc:
                raise _refused(exc, [item], counts) from exc


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

    Resumable: each line carries an idempotency key (`import:` + its exported
    memory_id, else a hash of the line), so running the same import again after
    an interruption stores only what was not stored yet.

    Dates are kept: a line's occurred_at (else its created_at), and the time it
    stops holding (the earlier of valid_until and expired_at) as valid_until;
    a memory expired with a reason is expired again, with it.
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
