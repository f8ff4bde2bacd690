"""`memanto session …` and `memanto status`: the active agent's session, and the server's health."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from memanto_server.cli.memanto.errors import EXIT_SERVER_SAID_NO, CliFailure
from memanto_server.cli.memanto.output import emit, human_time, lines, number_text, status_word
from memanto_server.cli.memanto.state import HOURS, State, agent_option, json_option, state
from memanto_server.lib.timeutil import human_duration
from memanto_server.sessions.schemas import CurrentSession

DEFAULT_EXTEND_HOURS = 6.0


@click.group()
def session() -> None:
    """The active agent's session."""


def _require_token(st: State, agent_id: str) -> None:
    if st.config.token_for(agent_id) is None:
        raise CliFailure(
            f"no session for agent '{agent_id}' on this machine",
            hint=f"start one: `memanto agent activate {agent_id}`",
        )


@session.command("info")
@agent_option
@json_option
def session_info(agent_id: str | None) -> None:
    """The session's agent, status, expiry and time left (renewed first when close to expiry)."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    _require_token(st, agent_id)
    with st.session(agent_id) as handle:
        current = handle.current()
    if st.json:
        emit(current)
        return
    click.echo("Current Session Information")
    click.echo()
    lines(
        ("Agent", current.agent_id),
        ("Status", status_word(current.status)),
        ("Created", human_time(current.created_at)),
        ("Expires", human_time(current.expires_at)),
        ("Remaining", human_duration(current.time_remaining_seconds)),
        width=11,
    )
    click.echo(
        f"Memories:  {current.memories_stored} stored, {current.memories_retrieved} retrieved"
        f", extended {current.extensions} time(s)"
    )


@session.command("extend")
@click.option("--hours", type=HOURS, help="Hours to add (default: default_hours, else 6).")
@agent_option
@json_option
def session_extend(hours: float | None, agent_id: str | None) -> None:
    """Add hours to the session; the token stays the same."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    _require_token(st, agent_id)
    hours = hours or st.config.default_hours or DEFAULT_EXTEND_HOURS
    st.quiet_extend = True
    with st.session(agent_id) as handle:
        extended = handle.extend(hours)
    if st.json:
        emit(extended)
        return
    click.echo("✓ Session extended successfully")
    lines(
        ("New Expiry", human_time(extended.expires_at)),
        ("Hours Added", number_text(extended.hours_added)),
        width=13,
    )


def _print_status(
    server_url: str, health: dict[str, Any], agent_id: str | None, current: CurrentSession | None
) -> None:
    checks = health.get("checks")
    health_word = str(health.get("status", "unknown"))
    detail = ", ".join(f"{k} {v}" for k, v in checks.items()) if isinstance(checks, dict) else ""
    lines(
        ("Server", f"{server_url} ({health_word}{': ' + detail if detail else ''})"),
        ("Agent", agent_id or "none (memanto agent activate AGENT)"),
        width=11,
    )
    if current is not None:
        lines(
            ("Status", status_word(current.status)),
            ("Expires", human_time(current.expires_at)),
            ("Remaining", human_duration(current.time_remaining_seconds)),
            width=11,
        )
    elif agent_id:
        lines(("Status", f"{status_word('inactive')} (no session on this machine)"), width=11)


@click.command("status")
@agent_option
@json_option
def status(agent_id: str | None) -> None:
    """Server health, the active agent and its session's time left (renewed first when close to expiry)."""
    st = state()
    client = st.client()
    settings = st.effective
    health = client.health()  # its JSON also when the server answers 503 (a backend is down)
    ready = health.get("status") == "ok"
    agent_id = agent_id or st.config.active_agent
    current = None
    if agent_id and ready and st.config.token_for(agent_id):
        with st.session(agent_id) as handle:
            handle.ensure_session()
            current = handle.current()
    if st.json:
        emit(
            {
                "server_url": settings.server_url,
                "health": health,
                "active_agent": agent_id,
                "session": msgspec.to_builtins(current) if current else None,
            }
        )
    else:
        _print_status(settings.server_url, health, agent_id, current)
    if not ready:
        raise CliFailure(f"the server at {settings.server_url} is not ready: {health}", EXIT_SERVER_SAID_NO)
