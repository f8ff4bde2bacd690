"""`memanto remember`, `answer` and `memory …`: the agent's memories, on its session (`recall`: `recall.py`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from memanto_server.cli.memanto.output import (
    cell,
    emit,
    human_time,
    lines,
    memory_text,
    new_table,
    number_text,
    print_table,
    short_time,
    status_word,
)
from memanto_server.cli.memanto.recall import TYPE_CHOICE, TYPES_TEXT
from memanto_server.cli.memanto.state import TIME, agent_option, json_option, state


@click.command("remember")
@click.argument("text")
@click.option(
    "--type",
    "-t",
    "memory_type",
    type=TYPE_CHOICE,
    metavar="TYPE",
    default="fact",
    show_default=True,
    help=f"The kind of memory: {TYPES_TEXT}.",
)
@click.option("--title", help="A short title (≤ 100 characters).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for several.")
@click.option("--confidence", type=click.FloatRange(0, 1), help="0 to 1 (server default 0.8).")
@click.option("--source", help="Where the memory comes from.")
@click.option("--occurred-at", type=TIME, metavar="TIME", help="The time it is about (default: now).")
@click.option("--valid-until", type=TIME, metavar="TIME", help="When it stops holding (default: never).")
@agent_option
@json_option
def remember(
    text: str,
    memory_type: str,
    title: str | None,
    tags: tuple[str, ...],
    confidence: float | None,
    source: str | None,
    occurred_at: datetime | None,
    valid_until: datetime | None,
    agent_id: str | None,
) -> None:
    """Store TEXT as a memory of the agent (`-` reads it from stdin).

    TIME: ISO-8601, e.g. 2024-05-01 or 2024-05-01T09:30:00Z (UTC when it has
    no offset).
    """
    st = state()
    agent_id = st.resolve_agent(agent_id)
    if text == "-":
        text = sys.stdin.read().strip()
    with st.session(agent_id) as handle:
        stored = handle.remember(
            text,
            type=memory_type,
            title=title,
            tags=list(tags) or None,
            confidence=confidence,
            source=source,
            occurred_at=occurred_at,
            valid_until=valid_until,
        )
    if st.json:
        emit(stored)
        return
    click.echo(f"✓ Memory stored for agent '{agent_id}'")
    lines(("Memory ID", stored.memory_id), ("Type", stored.type), ("Session ID", stored.session_id), width=12)
    if occurred_at is not None:
        lines(("Occurred", human_time(occurred_at)), width=12)
    if valid_until is not None:
        lines(("Valid Until", human_time(valid_until)), width=12)


@click.command("answer")
@click.argument("question")
@click.option("--limit", "-n", type=click.IntRange(1, 20), default=5, show_default=True, help="Memories to draw on.")
@click.option("--include-expired", is_flag=True, help="Draw on expired memories too.")
@agent_option
@json_option
def answer(question: str, limit: int, include_expired: bool, agent_id: str | None) -> None:
    """Answer QUESTION from the agent's own memories, with the sources."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        result = handle.answer(question, limit=limit, include_expired=include_expired)
    if st.json:
        emit(result)
        return
    click.echo(result.answer)
    if result.sources:
        click.echo()
        click.echo("Sources:")
        for source in result.sources:
            click.echo(f"- [{source.type}] {source.content} ({source.memory_id})")


@click.group()
def memory() -> None:
    """The agent's memory records."""


@memory.command("list")
@click.option("--type", "-t", "memory_type", type=TYPE_CHOICE, metavar="TYPE", help=f"Only this type ({TYPES_TEXT}).")
@click.option("--tag", "tags", multiple=True, help="Only memories with this tag; repeat: all must match.")
@click.option("--limit", "-n", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@agent_option
@json_option
def memory_list(
    memory_type: str | None, tags: tuple[str, ...], limit: int, cursor: str | None, agent_id: str | None
) -> None:
    """The agent's memories, newest first (expired ones too)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        page = handle.list_memories(type=memory_type, tags=list(tags) or None, limit=limit, cursor=cursor)
    if st.json:
        emit(page)
        return
    if not page.memories:
        click.echo(f"No memories for agent '{agent_id}'.")
        return
    table = new_table(f"Memories of '{agent_id}' (newest first; times UTC)")
    table.add_column("Created", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Memory", ratio=1, min_width=36)
    table.add_column("Tags")
    table.add_column("Status", no_wrap=True)
    for record in page.memories:
        text = memory_text(record.title, record.content, record.memory_id)
        status = cell(status_word(record.status))
        table.add_row(cell(short_time(record.created_at)), record.type, text, cell(record.tags), status)
    print_table(table)
    if page.next_cursor:
        click.echo(f"More: memanto memory list --cursor {page.next_cursor}")


@memory.command("show")
@click.argument("memory_id")
@agent_option
@json_option
def memory_show(memory_id: str, agent_id: str | None) -> None:
    """One memory with all its fields."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        record = handle.get_memory(memory_id)
    if st.json:
        emit(record)
        return
    lines(
        ("Memory ID", record.memory_id),
        ("Agent", record.agent_id),
        ("Type", record.type),
        ("Title", record.title),
        ("Content", record.content),
        ("Tags", ", ".join(record.tags) if record.tags else None),
        ("Confidence", number_text(record.confidence)),
        ("Source", record.source),
        ("Metadata", json.dumps(record.metadata, ensure_ascii=False) if record.metadata else None),
        ("Session ID", record.session_id),
        ("Occurred", human_time(record.occurred_at)),
        ("Created", human_time(record.created_at)),
        ("Updated", human_time(record.updated_at)),
        ("Valid Until", human_time(record.valid_until) if record.valid_until else None),
        ("Status", status_word(record.status)),
        ("Expired", human_time(record.expired_at) if record.expired_at else None),
        ("Reason", record.expired_reason),
    )


@memory.command("delete")
@click.argument("memory_id")
@agent_option
@json_option
def memory_delete(memory_id: str, agent_id: str | None) -> None:
    """Delete one memory."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        handle.delete_memory(memory_id)
    if st.json:
        emit({"memory_id": memory_id, "agent_id": agent_id, "deleted": True})
        return
    click.echo(f"✓ Memory {memory_id} deleted")


@memory.command("expire")
@click.argument("memory_id")
@click.option("--reason", help="Why it no longer holds (≤ 200 characters).")
@agent_option
@json_option
def memory_expire(memory_id: str, reason: str | None, agent_id: str | None) -> None:
    """Expire a memory: kept, but left out of recall and answer.

    A memory expired before keeps its first expiry and reason.
    """
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        record = handle.expire(memory_id, reason)
    if st.json:
        emit(record)
        return
    click.echo(f"✓ Memory {memory_id} expired")
    lines(
        ("Status", status_word(record.status)),
        ("Expired", human_time(record.expired_at)),
        ("Reason", record.expired_reason),
        width=9,
    )


@memory.command("restore")
@click.argument("memory_id")
@agent_option
@json_option
def memory_restore(memory_id: str, agent_id: str | None) -> None:
    """Make an expired memory hold again, with no end."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        record = handle.restore(memory_id)
    if st.json:
        emit(record)
        return
    click.echo(f"✓ Memory {memory_id} restored")
    lines(("Status", status_word(record.status)), width=9)
