"""`memanto remember`, `recall`, `answer` and `memory …`: the agent's memories, on its session."""

from __future__ import annotations

import json
import sys

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
)
from memanto_server.cli.memanto.state import agent_option, json_option, state
from memanto_server.memories.schemas import MEMORY_TYPES

TYPE_CHOICE = click.Choice(MEMORY_TYPES)
# The types in the option's help, which wraps: as a metavar they would be one line of 130 columns.
TYPES_TEXT = ", ".join(MEMORY_TYPES)


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
@agent_option
@json_option
def remember(
    text: str,
    memory_type: str,
    title: str | None,
    tags: tuple[str, ...],
    confidence: float | None,
    source: str | None,
    agent_id: str | None,
) -> None:
    """Store TEXT as a memory of the agent (`-` reads it from stdin)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    if text == "-":
        text = sys.stdin.read().strip()
    with st.session(agent_id) as handle:
        stored = handle.remember(
            text, type=memory_type, title=title, tags=list(tags) or None, confidence=confidence, source=source
        )
    if st.json:
        emit(stored)
        return
    click.echo(f"✓ Memory stored for agent '{agent_id}'")
    lines(("Memory ID", stored.memory_id), ("Type", stored.type), ("Session ID", stored.session_id), width=12)


@click.command("recall")
@click.argument("query")
@click.option(
    "--type",
    "-t",
    "types",
    type=TYPE_CHOICE,
    metavar="TYPE",
    multiple=True,
    help=f"Only this type; repeat for several ({TYPES_TEXT}).",
)
@click.option("--tag", "tags", multiple=True, help="Only memories with this tag; repeat: all must match.")
@click.option("--limit", "-n", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@agent_option
@json_option
def recall(
    query: str, types: tuple[str, ...], tags: tuple[str, ...], limit: int, cursor: str | None, agent_id: str | None
) -> None:
    """Search the agent's memories from every session, best match first."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        result = handle.recall(query, limit=limit, type=list(types) or None, tags=list(tags) or None, cursor=cursor)
    if st.json:
        emit(result)
        return
    if not result.memories:
        click.echo(f"No memories of '{agent_id}' match '{query}'.")
        return
    table = new_table(f"Recall '{query}': {result.count} found (match: {result.match})")
    table.add_column("#", justify="right")
    table.add_column("Score", justify="right")
    table.add_column("Type", no_wrap=True)
    table.add_column("Memory", ratio=1, min_width=36)
    table.add_column("Tags")
    for rank, memory in enumerate(result.memories, start=1):
        text = memory_text(memory.title, memory.content, memory.memory_id)
        table.add_row(str(rank), f"{memory.score:.2f}", memory.type, text, cell(memory.tags))
    print_table(table)
    if result.next_cursor:
        click.echo(f"More: memanto recall {json.dumps(query)} --cursor {result.next_cursor}")


@click.command("answer")
@click.argument("question")
@click.option("--limit", "-n", type=click.IntRange(1, 20), default=5, show_default=True, help="Memories to draw on.")
@agent_option
@json_option
def answer(question: str, limit: int, agent_id: str | None) -> None:
    """Answer QUESTION from the agent's own memories, with the sources."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    with st.session(agent_id) as handle:
        result = handle.answer(question, limit=limit)
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
    """The agent's memories, newest first."""
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
    for record in page.memories:
        text = memory_text(record.title, record.content, record.memory_id)
        table.add_row(cell(short_time(record.created_at)), record.type, text, cell(record.tags))
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
        ("Created", human_time(record.created_at)),
        ("Updated", human_time(record.updated_at)),
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
