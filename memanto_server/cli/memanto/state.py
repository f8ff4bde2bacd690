"""One invocation's state: the output mode, the configuration, the client, and the agents' sessions.

Every command that needs a session goes through an `AgentHandle` carrying the token kept
in `~/.memanto/config.json`. The handle extends a session that is close to its end and
activates a new one when the old one is gone; `on_session` writes the new token or expiry
back to the configuration and says so in one line on stderr, with the server's reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

import memanto_server.cli.memanto.config_file as cfg
from memanto_server.cli.memanto.output import hours_text, human_time, is_past, iso, notice
from memanto_server.client import AgentHandle, MemantoClient
from memanto_server.sessions.schemas import ActivatedSession, ExtendedSession

F = TypeVar("F", bound=Callable[..., Any])

# Why the handle replaced the stored session (`AgentHandle.replaced_because`), in words.
REPLACED_BECAUSE = {
    "session_expired": "expired",
    "session_ended": "ended",
    "session_superseded": "superseded (the agent was activated elsewhere)",
    "invalid_token": "token not accepted (invalid_token)",
    "extension_refused": "at its longest lifetime",
}


class State:
    """Per-invocation state: output mode, the configuration, the client and the handles' bookkeeping."""

    def __init__(self) -> None:
        self.json = False
        self._config: cfg.Config | None = None
        self._client: MemantoClient | None = None
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
            self._client = click.get_current_context().with_resource(client)
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
            self._on_session(agent, session, handle.replaced_because)

        # A stored expiry in the past may be stale (another client may have extended the
        # session): the handle then asks the server rather than starting a new session at once.
        known_expiry = stored_expiry if stored and stored_expiry and not is_past(stored_expiry) else None
        handle = self.client().agent(agent_id, token=stored, on_session=on_session, expires_at=known_expiry)
        try:
            yield handle
        finally:
            self._persist(handle)

    def _on_session(self, agent_id: str, session: Any, replaced_because: str | None) -> None:
        if isinstance(session, ActivatedSession):
            self.save(lambda c: c.store_session(agent_id, session.session_token, session.expires_at))
            expires = human_time(session.expires_at)
            if replaced_because is None:
                notice(f"✓ Session activated for agent '{agent_id}' (expires {expires})")
            else:
                # The server's word for the old session (its problem `code`), not a guess from the stored expiry.
                gone = REPLACED_BECAUSE.get(replaced_because, f"ended ({replaced_because})")
                notice(f"↻ Session {gone}; activated a new one for '{agent_id}' (expires {expires})")
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
        expires = iso(handle.expires_at)
        agent_id = handle.agent_id
        if token != self.config.token_for(agent_id) or (expires and expires != self.config.expires_for(agent_id)):
            self.save(lambda c: c.store_session(agent_id, token, expires or c.expires_for(agent_id)))


def state() -> State:
    return click.get_current_context().ensure_object(State)


# --------------------------------------------------------------------------- shared options


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


def complete_agents(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
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
        shell_complete=complete_agents,
        help="The agent to use (default: the active agent).",
    )(func)


HOURS = click.FloatRange(min=0, min_open=True)


class Moment(click.ParamType):
    """A time on the command line: ISO-8601, a date or a date and time, `Z` or an offset
    (without one it is UTC, as the server reads it). Converted to an aware datetime."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not an ISO-8601 time such as 2024-05-01 or 2024-05-01T09:30:00Z", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


TIME = Moment()
