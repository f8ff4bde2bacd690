"""`memanto recall`: search the agent's memories, or look at them in time.

`memanto recall QUERY` searches (best match first); instead of a QUERY, `--recent`,
`--as-of TIME` and `--changed-since TIME` are the server's recalls in time. All of them take
the same filters and pages (`--cursor`), and print the command that fetches the next page.
"""

from __future__ import annotations

import shlex
from datetime import datetime

import click
import msgspec

from memanto_server.cli.memanto.output import (
    cell,
    emit,
    human_time,
    memory_text,
    new_table,
    print_table,
    short_time,
    status_word,
)
from memanto_server.cli.memanto.state import TIME, agent_option, json_option, state
from memanto_server.client import AgentHandle
from memanto_server.memories.schemas import MEMORY_TYPES, RecallResult, TimelineMemory, TimelineResult

TYPE_CHOICE = click.Choice(MEMORY_TYPES)
TYPES_TEXT = ", ".join(MEMORY_TYPES)
DEFAULT_LIMIT = 10


class RecallAsked(msgspec.Struct, kw_only=True):
    """One `recall` invocation: which recall (`query`, `recent`, `as_of`, `changed_since`) and its filters."""

    kind: str
    query: str | None = None
    moment: datetime | None = None
    types: list[str]
    tags: list[str]
    include_expired: bool
    limit: int
    agent_id: str | None  # as given on the command line (None: the active agent)

    def again(self, cursor: str) -> str:
        """The command that fetches the next page: the same recall, filters and agent."""
        words = ["memanto", "recall"]
        if self.kind == "query":
            words.append(self.query or "")
        elif self.kind == "recent":
            words.append("--recent")
        else:
            words += [f"--{self.kind.replace('_', '-')}", self.moment.isoformat() if self.moment else ""]
        for memory_type in self.types:
            words += ["--type", memory_type]
        for tag in self.tags:
            words += ["--tag", tag]
        if self.include_expired:
            words.append("--include-expired")
        if self.limit != DEFAULT_LIMIT:
            words += ["--limit", str(self.limit)]
        if self.agent_id:
            words += ["--agent", self.agent_id]
        return shlex.join([*words, "--cursor", cursor])


def _asked(
    query: str | None, recent: bool, as_of: datetime | None, changed_since: datetime | None, include_expired: bool
) -> tuple[str, datetime | None]:
    """Which recall the options ask for; exactly one of QUERY, --recent, --as-of, --changed-since."""
    given = [
        (kind, moment)
        for kind, present, moment in (
            ("query", query is not None, None),
            ("recent", recent, None),
            ("as_of", as_of is not None, as_of),
            ("changed_since", changed_since is not None, changed_since),
        )
        if present
    ]
    if len(given) != 1:
        raise click.UsageError("give a QUERY, or one of --recent, --as-of TIME, --changed-since TIME")
    kind, moment = given[0]
    if include_expired and kind in {"as_of", "changed_since"}:
        # as-of answers from the expiries in force at its time; changed-since lists expiries as changes.
        raise click.UsageError("--include-expired goes with a QUERY or --recent")
    return kind, moment


def _fetch(handle: AgentHandle, asked: RecallAsked, cursor: str | None) -> RecallResult | TimelineResult:
    types, tags, limit = asked.types or None, asked.tags or None, asked.limit
    if asked.kind == "query":
        return handle.recall(
            asked.query or "", limit=limit, type=types, tags=tags, cursor=cursor, include_expired=asked.include_expired
        )
    if asked.kind == "recent":
        return handle.recall_recent(
            limit=limit, type=types, tags=tags, cursor=cursor, include_expired=asked.include_expired
        )
    assert asked.moment is not None
    if asked.kind == "as_of":
        return handle.recall_as_of(asked.moment, limit=limit, type=types, tags=tags, cursor=cursor)
    return handle.recall_changed_since(asked.moment, limit=limit, type=types, tags=tags, cursor=cursor)


# The lines of a recall in time: what its table is called, what it says when empty, which time it shows.
TIMELINE_TITLE = {
    "recent": "Recent memories of '{agent}': {count} (newest first; times UTC)",
    "as_of": "What '{agent}' knew at {moment}: {count} (latest first; times UTC)",
    "changed_since": "Changes to '{agent}' since {moment}: {count} (latest first; times UTC)",
}
TIMELINE_EMPTY = {
    "recent": "No memories for agent '{agent}'.",
    "as_of": "Agent '{agent}' knew nothing at {moment}.",
    "changed_since": "Nothing of agent '{agent}' changed since {moment}.",
}


def _when(memory: TimelineMemory, mode: str) -> str | None:
    """recent: when it was stored; as-of and changed-since: the time it is about."""
    return short_time(memory.created_at if mode == "recent" else memory.occurred_at or memory.created_at)


def _show_timeline(agent_id: str, result: TimelineResult) -> None:
    mode = result.temporal_mode
    words = {"agent": agent_id, "count": result.count, "moment": human_time(result.as_of or result.since)}
    if not result.memories:
        click.echo(TIMELINE_EMPTY[mode].format(**words))
        return
    table = new_table(TIMELINE_TITLE[mode].format(**words))
    if mode == "changed_since":
        table.add_column("Change", no_wrap=True)
    table.add_column("Stored" if mode == "recent" else "Occurred", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Memory", ratio=1, min_width=36)
    table.add_column("Tags")
    table.add_column("Status", no_wrap=True)
    for memory in result.memories:
        row = [cell(status_word(memory.change_type or ""))] if mode == "changed_since" else []
        row += [
            cell(_when(memory, mode)),
            cell(memory.type),
            memory_text(memory.title, memory.content, memory.memory_id),
            cell(memory.tags),
            cell(status_word(memory.status)),
        ]
        table.add_row(*row)
    print_table(table)


def _show_search(agent_id: str, result: RecallResult) -> None:
    if not result.memories:
        click.echo(f"No memories of '{agent_id}' match '{result.query}'.")
        return
    table = new_table(f"Recall '{result.query}': {result.count} found (mode: {result.mode})")
    table.add_column("#", justify="right")
    table.add_column("Score", justify="right")
    table.add_column("Type", no_wrap=True)
    table.add_column("Memory", ratio=1, min_width=36)
    table.add_column("Tags")
    table.add_column("Matched", no_wrap=True)
    for rank, memory in enumerate(result.memories, start=1):
        text = memory_text(memory.title, memory.content, memory.memory_id)
        table.add_row(str(rank), f"{memory.score:.2f}", memory.type, text, cell(memory.tags), cell(memory.signals))
    print_table(table)


@click.command("recall")
@click.argument("query", required=False)
@click.option("--recent", is_flag=True, help="Instead of QUERY: the memories stored last.")
@click.option("--as-of", type=TIME, metavar="TIME", help="Instead of QUERY: what the agent knew at TIME.")
@click.option("--changed-since", type=TIME, metavar="TIME", help="Instead of QUERY: what changed after TIME.")
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
@click.option("--include-expired", is_flag=True, help="Expired memories too (QUERY, --recent).")
@click.option("--limit", "-n", type=click.IntRange(1, 100), default=DEFAULT_LIMIT, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@agent_option
@json_option
def recall(
    query: str | None,
    recent: bool,
    as_of: datetime | None,
    changed_since: datetime | None,
    types: tuple[str, ...],
    tags: tuple[str, ...],
    include_expired: bool,
    limit: int,
    cursor: str | None,
    agent_id: str | None,
) -> None:
    """Search the agent's memories from every session, best match first.

    \b
    Or, instead of QUERY, look at them in time:
      --recent              the memories stored last, newest first
      --as-of TIME          what the agent knew at TIME: memories that had
                            occurred by then and were not yet expired
      --changed-since TIME  memories created, changed, expired or restored
                            after TIME, latest first
    TIME: ISO-8601, e.g. 2024-05-01 or 2024-05-01T09:30:00+02:00 (UTC when
    it has no offset). Expired memories are left out of QUERY and --recent
    unless --include-expired.
    """
    kind, moment = _asked(query, recent, as_of, changed_since, include_expired)
    asked = RecallAsked(
        kind=kind,
        query=query,
        moment=moment,
        types=list(types),
        tags=list(tags),
        include_expired=include_expired,
        limit=limit,
        agent_id=agent_id,
    )
    st = state()
    agent = st.resolve_agent(agent_id)
    with st.session(agent) as handle:
        result = _fetch(handle, asked, cursor)
    if st.json:
        emit(result)
        return
    if isinstance(result, RecallResult):
        _show_search(agent, result)
    else:
        _show_timeline(agent, result)
    if result.next_cursor:
        click.echo(f"More: {asked.again(result.next_cursor)}")
