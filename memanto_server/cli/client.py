"""`memanto`: the command line for agents and the people who run them.

Built on the Python client (`memanto_server.client`): every call goes through `MemantoClient`, and
every command that needs a session goes through an `AgentHandle` carrying the token kept
in `~/.memanto/config.json`. The handle extends a session that is close to its end and
activates a new one when the old one is gone; the `on_session` callback below writes the
new token or expiry back to the configuration and says so in one line on stderr.

Output follows the documented MEMANTO CLI (`✓ Session activated for agent '…'`, …).
`--json` prints the server's response as JSON and nothing else on stdout. Exit codes:
0 ok, 1 the server said no (its problem `detail` and `code` on stderr), 2 usage,
3 the server cannot be reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click
import msgspec
from click.shell_completion import CompletionItem, get_completion_class
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from memanto_server.cli import config as cfg
from memanto_server.client import AgentHandle, ConnectionFailedError, MemantoClient, MemantoError, NotFoundError
from memanto_server.lib.timeutil import human_duration
from memanto_server.memories.schemas import MAX_BATCH, MEMORY_TYPES
from memanto_server.sessions.schemas import ActivatedSession, ExtendedSession

F = TypeVar("F", bound=Callable[..., Any])

EXIT_SERVER_SAID_NO = 1
EXIT_UNREACHABLE = 3
TOKEN_SHOWN = 36  # the documented output shows the token's first 36 characters (its JOSE header)
SESSION_ENDED_CODES = {"session_expired", "session_ended", "session_superseded", "invalid_token"}
EXPORT_FIELDS = ("memory_id", "content", "type", "title", "tags", "confidence", "source", "metadata", "created_at")
IMPORT_FIELDS = ("content", "type", "title", "tags", "confidence", "source", "metadata")
MAX_IDEMPOTENCY_KEY = 200

# Piped output is read by people too (`| less`, `| grep`): wider than the 80 columns Rich assumes.
out = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)
err = Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- errors


class CliFailure(click.ClickException):
    """A failure with its own exit code: 1 (the server said no, or a local file problem) or 3."""

    def __init__(self, message: str, exit_code: int = EXIT_SERVER_SAID_NO, hint: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.hint = hint

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"Hint: {self.hint}", err=True)


def _server_said_no(exc: MemantoError) -> CliFailure:
    label = ", ".join(str(part) for part in (exc.code, exc.status) if part)
    message = f"{exc.detail} ({label})" if label else exc.detail
    hint = None
    if exc.code in {"missing_credentials", "invalid_api_key"}:
        hint = "set an API key: `memanto config set api_key mk_…` or MEMANTO_API_KEY in the environment"
    elif exc.code in SESSION_ENDED_CODES:
        hint = "start a new session: `memanto agent activate AGENT`"
    return CliFailure(message, EXIT_SERVER_SAID_NO, hint)


class MemantoGroup(click.Group):
    """The root group: turns client errors into messages and exit codes (1 said no, 3 unreachable)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectionFailedError as exc:
            raise CliFailure(
                exc.detail,
                EXIT_UNREACHABLE,
                "is it running? Set its address with `memanto config set server_url URL` or MEMANTO_URL",
            ) from exc
        except MemantoError as exc:
            raise _server_said_no(exc) from exc
        except cfg.ConfigError as exc:
            raise CliFailure(str(exc)) from exc


# --------------------------------------------------------------------------- state


class State:
    """Per-invocation state: output mode, the configuration, the client and the handles' bookkeeping."""

    def __init__(self) -> None:
        self.json = False
        self._config: cfg.Config | None = None
        self._client: MemantoClient | None = None
        self._ctx: click.Context | None = None
        self.quiet_extend = False  # an explicit `session extend` prints its own answer

    @property
    def config(self) -> cfg.Config:
        if self._config is None:
            self._config = cfg.load()
        return self._config

    @property
    def effective(self) -> cfg.Effective:
        return cfg.effective(self.config)

    def client(self) -> MemantoClient:
        if self._client is None:
            settings = self.effective
            client = MemantoClient(
                settings.server_url,
                settings.api_key,
                renew_threshold_minutes=self.config.renew_threshold_minutes,
                default_hours=self.config.default_hours,
            )
            ctx = click.get_current_context()
            self._client = ctx.with_resource(client)
        return self._client

    def resolve_agent(self, agent_id: str | None) -> str:
        if agent_id:
            return agent_id
        if self.config.active_agent:
            return self.config.active_agent
        raise click.UsageError("no active agent: run `memanto agent activate AGENT` or pass --agent AGENT")

    def save(self, change: Callable[[cfg.Config], None]) -> None:
        """Apply `change` to the newest file under the lock, and to the copy in hand."""
        with cfg.update() as fresh:
            change(fresh)
        change(self.config)
        self.config.mirror()

    # -- sessions through the client's AgentHandle

    @contextlib.contextmanager
    def session(self, agent_id: str) -> Iterator[AgentHandle]:
        """The agent's handle with its stored token; whatever it activates or extends is saved."""
        stored = self.config.token_for(agent_id)
        stored_expiry = self.config.expires_for(agent_id)

        def on_session(agent: str, session: Any) -> None:
            self._on_session(agent, session, had_token=stored is not None, stored_expiry=stored_expiry)

        # A stored expiry in the past may be stale (another client may have extended the
        # session): the handle then asks the server rather than starting a new session at once.
        known_expiry = stored_expiry if stored and stored_expiry and not _is_past(stored_expiry) else None
        handle = self.client().agent(agent_id, token=stored, on_session=on_session, expires_at=known_expiry)
        try:
            yield handle
        finally:
            self._persist(handle)

    def _on_session(self, agent_id: str, session: Any, *, had_token: bool, stored_expiry: str | None) -> None:
        if isinstance(session, ActivatedSession):
            self.save(lambda c: c.store_session(agent_id, session.session_token, session.expires_at))
            expires = human_time(session.expires_at)
            if had_token:
                gone = "expired" if _is_past(stored_expiry) else "ended"
                notice(f"↻ Session {gone}; activated a new one for '{agent_id}' (expires {expires})")
            else:
                notice(f"✓ Session activated for agent '{agent_id}' (expires {expires})")
        elif isinstance(session, ExtendedSession):
            token = self.config.token_for(agent_id)
            if token:
                self.save(lambda c: c.store_session(agent_id, token, session.expires_at))
            if not self.quiet_extend:
                notice(
                    f"↻ Session for '{agent_id}' renewed: +{hours_text(session.hours_added)}, "
                    f"now expires {human_time(session.expires_at)}"
                )

    def _persist(self, handle: AgentHandle) -> None:
        token = handle.token
        if not token:
            return
        expires = _iso(handle.expires_at)
        agent_id = handle.agent_id
        if token != self.config.token_for(agent_id) or (expires and expires != self.config.expires_for(agent_id)):
            self.save(lambda c: c.store_session(agent_id, token, expires or c.expires_for(agent_id)))


def state() -> State:
    return click.get_current_context().ensure_object(State)


# --------------------------------------------------------------------------- output helpers


def notice(line: str) -> None:
    """One line about what happened on the side (renewals, activations): stderr, never stdout."""
    click.echo(line, err=True)


def emit(value: Any) -> None:
    """The raw response as JSON: the Struct as the server sent it."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


def lines(*pairs: tuple[str, Any], width: int | None = None) -> None:
    width = width or max(len(label) for label, _ in pairs) + 2
    for label, value in pairs:
        click.echo(f"{label + ':':<{width}}{'-' if value is None or value == '' else value}")


def parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(value: str | datetime | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def _is_past(value: str | None) -> bool:
    if not value:
        return False
    try:
        return parse_time(value) <= datetime.now(UTC)
    except ValueError:
        return False


def human_time(value: str | datetime | None) -> str:
    """`2026-03-30 16:30:00 UTC`, as the documented CLI prints times."""
    if value is None:
        return "-"
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value)


def hours_text(hours: float) -> str:
    return f"{hours:g}h"


def short_token(token: str) -> str:
    """The documented output's shortened token: never the whole of it."""
    return token[: min(TOKEN_SHOWN, len(token) // 2)] + "..."


def _cell(value: Any) -> Text:
    if value is None or value == "":
        return Text("-")
    if isinstance(value, list):
        return Text(", ".join(str(v) for v in value) or "-")
    return Text(str(value))  # Text, not markup: memory content is shown as written


def short_time(value: str | None) -> str | None:
    """`2026-03-30 16:30` for table cells (the table's title says UTC)."""
    if not value:
        return None
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


def new_table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def memory_text(title: str | None, content: str, memory_id: str) -> Text:
    """A memory's cell: its title in bold, its content as written, its id beneath (dim)."""
    text = Text()
    if title:
        text.append(title, style="bold")
        text.append(": ")
    text.append(content)
    text.append("\n")
    text.append(memory_id, style="dim")
    return text


def _print_table(table: Table) -> None:
    out.print(table)


# --------------------------------------------------------------------------- options


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def json_option(func: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        is_eager=True,
        help="Print the raw response as JSON (for scripts).",
    )(func)


def _complete_agents(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Agents this machine has sessions for (no network during completion)."""
    with contextlib.suppress(cfg.ConfigError):
        config = cfg.load()
        names = sorted({*config.agents, *([config.active_agent] if config.active_agent else [])})
        return [CompletionItem(name) for name in names if name.startswith(incomplete)]
    return []


def agent_option(func: F) -> F:
    return click.option(
        "--agent",
        "-a",
        "agent_id",
        metavar="AGENT",
        shell_complete=_complete_agents,
        help="The agent to use (default: the active agent).",
    )(func)


TYPE_CHOICE = click.Choice(MEMORY_TYPES)
HOURS = click.FloatRange(min=0, min_open=True)


# --------------------------------------------------------------------------- root


@click.group(cls=MemantoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print raw response JSON on stdout for every command (also accepted after the command).",
)
@click.version_option(package_name="memanto-server", prog_name="memanto")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Memanto: sessions and memories for AI agents, from the terminal.

    \b
    Configuration: ~/.memanto/config.json (MEMANTO_HOME moves the folder).
    Environment: MEMANTO_URL, MEMANTO_API_KEY (or MOORCHEH_API_KEY).
    Exit codes: 0 ok, 1 the server said no, 2 usage, 3 server unreachable.
    """
    obj = ctx.ensure_object(State)
    obj.json = obj.json or as_json


# --------------------------------------------------------------------------- agent


@cli.group()
def agent() -> None:
    """Agents and their sessions."""


@agent.command("activate")
@click.argument("agent_id", metavar="AGENT", shell_complete=_complete_agents)
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


@agent.command("deactivate")
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=_complete_agents)
@json_option
def agent_deactivate(agent_id: str | None) -> None:
    """End AGENT's session (default: the active agent) and show its summary."""
    st = state()
    agent_id = st.resolve_agent(agent_id)
    client = st.client()
    token = st.config.token_for(agent_id)
    try:
        try:
            ended = client.deactivate(agent_id, token=token)
        except MemantoError as exc:
            if token is None or exc.status != 401 or exc.code not in SESSION_ENDED_CODES:
                raise
            ended = client.deactivate(agent_id)  # the stored token is dead: end whatever is live, by key
    except NotFoundError as exc:
        if exc.code == "no_active_session":
            st.save(lambda c: c.forget_session(agent_id))
        raise
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
            _cell(item.agent_id),
            _cell(item.description),
            _cell(short_time(item.created_at)),
            _cell(short_time(item.last_session_at)),
        )
    _print_table(table)
    if page.next_cursor:
        click.echo(f"More: memanto agent list --cursor {page.next_cursor}")


@agent.command("show")
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=_complete_agents)
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
        ("Status", "ACTIVE" if live else "INACTIVE"),
    )
    if live:
        lines(
            ("Session ID", live.session_id),
            ("Expires", human_time(live.expires_at)),
            ("Remaining", human_duration(live.time_remaining_seconds)),
            width=14,
        )


@agent.command("delete")
@click.argument("agent_id", metavar="AGENT", shell_complete=_complete_agents)
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
@click.argument("agent_id", metavar="[AGENT]", required=False, shell_complete=_complete_agents)
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
            _cell(record.session_id),
            _cell("ACTIVE" if record.end_reason == "active" else record.end_reason),
            _cell(short_time(record.started_at)),
            _cell(human_duration(record.duration_seconds)),
            _cell(record.memories_stored),
            _cell(record.memories_retrieved),
            _cell(record.extensions),
        )
    _print_table(table)
    if history.next_cursor:
        click.echo(f"More: memanto agent sessions {agent_id} --cursor {history.next_cursor}")


# --------------------------------------------------------------------------- session


@cli.group()
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
        ("Status", current.status.upper()),
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
    hours = hours or st.config.default_hours or 6.0
    st.quiet_extend = True
    with st.session(agent_id) as handle:
        extended = handle.extend(hours)
    if st.json:
        emit(extended)
        return
    click.echo("✓ Session extended successfully")
    lines(("New Expiry", human_time(extended.expires_at)), ("Hours Added", f"{extended.hours_added:g}"), width=13)


# --------------------------------------------------------------------------- status


@cli.command("status")
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
        checks = health.get("checks")
        state_word = str(health.get("status", "unknown"))
        detail = ", ".join(f"{k} {v}" for k, v in checks.items()) if isinstance(checks, dict) else ""
        lines(
            ("Server", f"{settings.server_url} ({state_word}{': ' + detail if detail else ''})"),
            ("Agent", agent_id or "none (memanto agent activate AGENT)"),
            width=11,
        )
        if current is not None:
            lines(
                ("Status", current.status.upper()),
                ("Expires", human_time(current.expires_at)),
                ("Remaining", human_duration(current.time_remaining_seconds)),
                width=11,
            )
        elif agent_id:
            lines(("Status", "INACTIVE (no session on this machine)"), width=11)
    if not ready:
        raise CliFailure(f"the server at {settings.server_url} is not ready: {health}", EXIT_SERVER_SAID_NO)


# --------------------------------------------------------------------------- memories


@cli.command("remember")
@click.argument("text")
@click.option("--type", "-t", "memory_type", type=TYPE_CHOICE, default="fact", show_default=True)
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


@cli.command("recall")
@click.argument("query")
@click.option("--type", "-t", "types", type=TYPE_CHOICE, multiple=True, help="Only this type; repeat for several.")
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
    table = new_table(f"Recall '{query}': {result.count} found (mode: {result.mode})")
    table.add_column("#", justify="right")
    table.add_column("Score", justify="right")
    table.add_column("Type", no_wrap=True)
    table.add_column("Memory", ratio=1, min_width=36)
    table.add_column("Tags")
    for rank, memory in enumerate(result.memories, start=1):
        text = memory_text(memory.title, memory.content, memory.memory_id)
        table.add_row(str(rank), f"{memory.score:.2f}", memory.type, text, _cell(memory.tags))
    _print_table(table)
    if result.next_cursor:
        click.echo(f"More: memanto recall {json.dumps(query)} --cursor {result.next_cursor}")


@cli.command("answer")
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


@cli.group()
def memory() -> None:
    """The agent's memory records."""


@memory.command("list")
@click.option("--type", "-t", "memory_type", type=TYPE_CHOICE, help="Only this type.")
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
        table.add_row(_cell(short_time(record.created_at)), record.type, text, _cell(record.tags))
    _print_table(table)
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
        ("Confidence", f"{record.confidence:g}"),
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


# --------------------------------------------------------------------------- export / import


@cli.command("export")
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


class ImportItem(msgspec.Struct, kw_only=True):
    line_number: int
    memory: dict[str, Any]


def read_import_file(file: Path) -> list[ImportItem]:
    """Every memory of FILE, each with its idempotency key; any unreadable line stops the import before it starts."""
    items: list[ImportItem] = []
    stream = sys.stdin if str(file) == "-" else file.open(encoding="utf-8")
    try:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise CliFailure(f"{file}, line {number}: not JSON ({exc})") from None
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                raise CliFailure(f'{file}, line {number}: expected a JSON object with a "content" string')
            memory = {name: data[name] for name in IMPORT_FIELDS if data.get(name) is not None}
            memory["idempotency_key"] = import_key(data, line)
            items.append(ImportItem(line_number=number, memory=memory))
    except UnicodeDecodeError as exc:
        raise CliFailure(f"{file} is not UTF-8 text: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return items


def import_key(data: dict[str, Any], line: str) -> str:
    """`import:<exported memory_id>`, else `import:<sha256 of the line>`: the same line never stores twice."""
    memory_id = data.get("memory_id")
    if isinstance(memory_id, str) and memory_id and len(memory_id) <= MAX_IDEMPOTENCY_KEY - len("import:"):
        return f"import:{memory_id}"
    return "import:" + hashlib.sha256(line.encode("utf-8")).hexdigest()


@cli.command("import")
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
    stored = already = 0
    show_progress = not st.json and len(items) > 0
    progress = Progress(
        TextColumn("Importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not show_progress,
        transient=False,
    )
    try:
        with st.session(agent_id) as handle, progress:
            task = progress.add_task("import", total=len(items))
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                try:
                    result = handle.batch_remember([item.memory for item in batch])
                except MemantoError as exc:
                    first, last = batch[0].line_number, batch[-1].line_number
                    lines_span = f"line {first}" if first == last else f"lines {first}-{last}"
                    raise CliFailure(
                        f"{exc.detail} ({exc.code or exc.status}) in {lines_span}; "
                        f"{stored} stored before it, {already} already stored",
                        EXIT_UNREACHABLE if isinstance(exc, ConnectionFailedError) else EXIT_SERVER_SAID_NO,
                        "fix the file and run the same import again: what is stored is skipped",
                    ) from exc
                stored += result.stored
                already += result.already_stored
                progress.advance(task, len(batch))
    except KeyboardInterrupt:
        notice(f"Interrupted after {stored + already} of {len(items)}; run the same import again to resume.")
        sys.exit(130)
    if st.json:
        summary = {"agent_id": agent_id, "file": str(file), "total": len(items)}
        emit({**summary, "stored": stored, "already_stored": already})
        return
    click.echo(f"✓ Imported {len(items)} memories into agent '{agent_id}'")
    lines(("Stored", stored), ("Already stored", already), width=16)


# --------------------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Show and change ~/.memanto/config.json."""


@config_group.command("show")
@json_option
def config_show() -> None:
    """The configuration in force, secrets masked, with where each value comes from."""
    st = state()
    config = st.config
    settings = st.effective
    view = {
        "config_file": str(cfg.config_path()),
        "server_url": settings.server_url,
        "server_url_source": settings.server_url_source,
        "api_key": cfg.mask(settings.api_key) if settings.api_key else None,
        "api_key_source": settings.api_key_source,
        "active_agent": config.active_agent,
        "active_session_token": cfg.mask(config.active_session_token) if config.active_session_token else None,
        "renew_threshold_minutes": config.renew_threshold_minutes,
        "default_hours": config.default_hours,
        "agents": {
            name: {"session_token": cfg.mask(entry.session_token), "expires_at": entry.expires_at}
            for name, entry in sorted(config.agents.items())
        },
    }
    if st.json:
        emit(view)
        return
    lines(
        ("Config File", view["config_file"]),
        ("server_url", f"{settings.server_url} ({settings.server_url_source})"),
        ("api_key", f"{view['api_key'] or '-'} ({settings.api_key_source})"),
        ("active_agent", config.active_agent),
        ("active_session_token", view["active_session_token"]),
        ("renew_threshold_minutes", f"{config.renew_threshold_minutes:g}"),
        ("default_hours", f"{config.default_hours:g}" if config.default_hours else "- (server default)"),
    )
    if config.agents:
        click.echo("agents:")
        for name, entry in sorted(config.agents.items()):
            click.echo(f"  {name}: token {cfg.mask(entry.session_token)}, expires {human_time(entry.expires_at)}")


@config_group.command("set")
@click.argument("key", type=click.Choice(sorted(cfg.SETTABLE)))
@click.argument("value")
@json_option
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE."""
    st = state()
    try:
        parsed = cfg.SETTABLE[key](value)
    except cfg.ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="VALUE") from None

    def change(c: cfg.Config) -> None:
        if key == "active_agent":
            c.set_active(parsed)
        else:
            setattr(c, key, parsed)

    st.save(change)
    shown = cfg.mask(parsed) if key == "api_key" else parsed
    if st.json:
        emit({"key": key, "value": shown})
        return
    click.echo(f"✓ {key} = {shown}")


@config_group.command("unset")
@click.argument("key", type=click.Choice(sorted(cfg.SETTABLE)))
@json_option
def config_unset(key: str) -> None:
    """Remove KEY (back to its default)."""
    st = state()
    default = getattr(cfg.Config(), key)

    def change(c: cfg.Config) -> None:
        if key == "active_agent":
            c.set_active(None)
        else:
            setattr(c, key, default)

    st.save(change)
    if st.json:
        emit({"key": key, "value": default})
        return
    click.echo(f"✓ {key} unset" + (f" (default {default})" if default is not None else ""))


@config_group.command("path")
@json_option
def config_path_command() -> None:
    """Where the configuration file is."""
    if state().json:
        emit({"config_file": str(cfg.config_path())})
        return
    click.echo(str(cfg.config_path()))


# --------------------------------------------------------------------------- completion


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), required=False)
@json_option
def completion(shell: str | None) -> None:
    """Print the shell completion script.

    \b
    bash: eval "$(memanto completion bash)"     (e.g. in ~/.bashrc)
    zsh:  eval "$(memanto completion zsh)"      (e.g. in ~/.zshrc)
    fish: memanto completion fish > ~/.config/fish/completions/memanto.fish
    """
    if shell is None:
        shell = Path(os.environ.get("SHELL", "bash")).name
        if shell not in {"bash", "zsh", "fish"}:
            shell = "bash"
    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - the choices are Click's own shells
        _fail_usage(f"no completion for {shell}")
    script = completer(cli, {}, "memanto", "_MEMANTO_COMPLETE").source()
    if state().json:
        emit({"shell": shell, "script": script})
        return
    click.echo(script)


def _fail_usage(message: str) -> NoReturn:
    raise click.UsageError(message)


def main() -> None:
    cli.main(prog_name="memanto", complete_var="_MEMANTO_COMPLETE")


if __name__ == "__main__":
    main()
