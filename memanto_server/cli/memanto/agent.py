"""`memanto agent …`: agents and their sessions, by API key."""

from __future__ import annotations

import click

import memanto_server.cli.memanto.config_file as cfg
from memanto_server.cli.memanto.errors import SESSION_ENDED_CODES
from memanto_server.cli.memanto.output import (
    cell,
    emit,
    human_time,
    lines,
    new_table,
    print_table,
    short_time,
    short_token,
    status_word,
)
from memanto_server.cli.memanto.state import HOURS, complete_agents, json_option, state
from memanto_server.client import MemantoError, NotFoundError
from memanto_server.lib.timeutil import human_duration
from memanto_server.sessions.schemas import EndedSession


@click.group()
def agent() -> None:
    """Agents and their sessions."""


@agent.command("activate")
@click.argument("agent_id", metavar="AGENT", shell_complete=complete_agents)
@click.option("--hours", type=HOURS, help="Session length in hours (default: the server's, 6).")
@json_option
def agent_activate(agent_id: str, hours: float | None) -> None:
    """Start a session for AGENT (created if new) and make it the active agent."""
    st = state()
    session = st.client().activate(agent_id, duration_hours=hours or st.config.default_hours)

    def change(c: cfg.Config) -> None:
        c.store_session(agent_id, session.session_token, session.expires_at)
        c.set_active(agent_id)

    st.save(change)
    if st.json:
        emit(session)
        return
    click.echo(f"✓ Session activated for agent '{agent_id}'")
    lines(
        ("Session ID", session.session_id),
        ("Session Token", short_token(session.session_token)),
        ("Created At", human_time(session.created_at)),
        ("Expires At", human_time(session.expires_at)),
        ("Expires In", human_duration(session.expires_in_seconds)),
        width=15,
    )
    if session.superseded_session_id:
        click.echo(f"(ended the earlier session {session.superseded_session_id})")


def _deactivate(agent_id: str) -> EndedSession:
    """End the agent's session with the stored token, or by API key when that token is dead."""
    st = state()
    client = st.client()
    token = st.config.token_for(agent_id)
    try:
        try:
            return client.deactivate(agent_id, token=token)
        except MemantoError as exc:
            if token is None or exc.status != 401 or exc.code not in SESSION_ENDED_CODES:
                raise
            return client.deactivate(agent_id)  # the stored token is dead: end whatever is live, by key
    except NotFoundError as exc:
        if exc.code == "no_active_session":
            st.save(lambda c: c.forget_session(agent_id))
        raise


@agent.command("deactivate")
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=complete_agents)
@json_option
def agent_deactivate(agent_id: str | None) -> None:
    """End AGENT's session (default: the active agent) and show its summary."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    ended = _deactivate(agent_id)
    st.save(lambda c: c.forget_session(agent_id))
    if st.json:
        emit(ended)
        return
    click.echo(f"✓ Session deactivated for agent '{agent_id}'")
    click.echo("Session Summary:")
    click.echo(f"- Duration: {ended.duration or human_duration(ended.duration_seconds)}")
    click.echo(f"- Memories Stored: {ended.memories_stored}")
    click.echo(f"- Memories Retrieved: {ended.memories_retrieved}")


@agent.command("create")
@click.argument("agent_id", metavar="AGENT")
@click.option("--description", "-d", help="What the agent is for.")
@json_option
def agent_create(agent_id: str, description: str | None) -> None:
    """Create AGENT without starting a session."""
    st = state()
    created = st.client().create_agent(agent_id, description=description)
    if st.json:
        emit(created)
        return
    click.echo(f"✓ Agent '{agent_id}' created")


@agent.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@json_option
def agent_list(limit: int, cursor: str | None) -> None:
    """The agents of this API key's owner."""
    st = state()
    page = st.client().list_agents(limit=limit, cursor=cursor)
    if st.json:
        emit(page)
        return
    if not page.agents:
        click.echo("No agents yet. Start one with `memanto agent activate AGENT`.")
        return
    active = st.config.active_agent
    table = new_table(f"Agents ({page.count}; * active; times UTC)")
    table.add_column("")
    table.add_column("Agent", no_wrap=True)
    table.add_column("Description", ratio=1)
    table.add_column("Created", no_wrap=True)
    table.add_column("Last Session", no_wrap=True)
    for item in page.agents:
        table.add_row(
            "*" if item.agent_id == active else "",
            cell(item.agent_id),
            cell(item.description),
            cell(short_time(item.created_at)),
            cell(short_time(item.last_session_at)),
        )
    print_table(table)
    if page.next_cursor:
        click.echo(f"More: memanto agent list --cursor {page.next_cursor}")


@agent.command("show")
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=complete_agents)
@json_option
def agent_show(agent_id: str | None) -> None:
    """AGENT's counts and live session (default: the active agent)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    detail = st.client().get_agent(agent_id)
    if st.json:
        emit(detail)
        return
    live = detail.active_session
    lines(
        ("Agent", detail.agent_id),
        ("Description", detail.description),
        ("Created", human_time(detail.created_at)),
        ("Last Session", human_time(detail.last_session_at) if detail.last_session_at else None),
        ("Memories", detail.memory_count),
        ("Sessions", detail.session_count),
        ("Status", status_word("active" if live else "inactive")),
    )
    if live:
        lines(
            ("Session ID", live.session_id),
            ("Expires", human_time(live.expires_at)),
            ("Remaining", human_duration(live.time_remaining_seconds)),
            width=14,
        )


@agent.command("delete")
@click.argument("agent_id", metavar="AGENT", shell_complete=complete_agents)
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@json_option
def agent_delete(agent_id: str, yes: bool) -> None:
    """Delete AGENT with all its memories and session history, for good."""
    st = state()
    if not yes:
        click.confirm(f"Delete agent '{agent_id}' with all its memories and session history?", abort=True, err=True)
    st.client().delete_agent(agent_id)

    def change(c: cfg.Config) -> None:
        c.forget_session(agent_id)
        if c.active_agent == agent_id:
            c.set_active(None)

    st.save(change)
    if st.json:
        emit({"agent_id": agent_id, "deleted": True})
        return
    click.echo(f"✓ Agent '{agent_id}' deleted")


@agent.command("sessions")
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=complete_agents)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@json_option
def agent_sessions(agent_id: str | None, limit: int, cursor: str | None) -> None:
    """AGENT's session history, newest first (default: the active agent)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    history = st.client().agent_sessions(agent_id, limit=limit, cursor=cursor)
    if st.json:
        emit(history)
        return
    if not history.sessions:
        click.echo(f"No sessions yet for agent '{agent_id}'.")
        return
    table = new_table(f"Sessions of '{agent_id}' (newest first; times UTC)")
    table.add_column("Session", no_wrap=True)
    table.add_column("Status", overflow="fold")
    table.add_column("Started")
    table.add_column("Duration", justify="right", overflow="fold")
    for column in ("Stored", "Retrieved", "Extended"):
        table.add_column(column, justify="right", overflow="fold")
    for record in history.sessions:
        table.add_row(
            cell(record.session_id),
            cell(status_word(record.end_reason)),
            cell(short_time(record.started_at)),
            cell(human_duration(record.duration_seconds)),
            cell(record.memories_stored),
            cell(record.memories_retrieved),
            cell(record.extensions),
        )
    print_table(table)
    if history.next_cursor:
        click.echo(f"More: memanto agent sessions {agent_id} --cursor {history.next_cursor}")
