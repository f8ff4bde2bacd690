"""`memanto config …`: show and change ~/.memanto/config.json (the file itself: `config_file.py`)."""

from __future__ import annotations

from typing import Any

import click

import memanto_server.cli.memanto.config_file as cfg
from memanto_server.cli.memanto.output import emit, human_time, lines, number_text, whole
from memanto_server.cli.memanto.state import json_option, state

KEY = click.Choice(sorted(cfg.SETTABLE))


@click.group("config")
def config_group() -> None:
    """Show and change ~/.memanto/config.json."""


def _shown(key: str, value: Any) -> Any:
    """A value as `config` prints it: a key masked, a whole number without `.0`."""
    if key == "api_key":
        return cfg.mask(value)
    if isinstance(value, float):
        return whole(value)
    return value


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
        "renew_threshold_minutes": _shown("renew_threshold_minutes", config.renew_threshold_minutes),
        "default_hours": _shown("default_hours", config.default_hours),
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
        ("renew_threshold_minutes", number_text(config.renew_threshold_minutes)),
        ("default_hours", number_text(config.default_hours) if config.default_hours else "- (server default)"),
    )
    if config.agents:
        click.echo("agents:")
        for name, entry in sorted(config.agents.items()):
            click.echo(f"  {name}: token {cfg.mask(entry.session_token)}, expires {human_time(entry.expires_at)}")


# The keys, one line each: a Choice metavar of all five is wider than an 80-column terminal.
@config_group.command("set")
@click.argument("key", type=KEY, metavar="KEY")
@click.argument("value")
@json_option
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE.

    \b
    KEY is one of:
      server_url               the server's address (MEMANTO_URL overrides it)
      api_key                  an owner's API key (MEMANTO_API_KEY overrides it)
      active_agent             the agent commands use without --agent
      renew_threshold_minutes  renew a session with less than this left (60)
      default_hours            hours of a new or renewed session (server: 6)
    """
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
    shown = _shown(key, parsed)
    if st.json:
        emit({"key": key, "value": shown})
        return
    click.echo(f"✓ {key} = {shown}")


@config_group.command("unset")
@click.argument("key", type=KEY, metavar="KEY")
@json_option
def config_unset(key: str) -> None:
    """Remove KEY (back to its default); KEY as for `config set`."""
    st = state()
    default = getattr(cfg.Config(), key)

    def change(c: cfg.Config) -> None:
        if key == "active_agent":
            c.set_active(None)
        else:
            setattr(c, key, default)

    st.save(change)
    shown = _shown(key, default) if default is not None else None
    if st.json:
        emit({"key": key, "value": shown})
        return
    click.echo(f"✓ {key} unset" + (f" (default {shown})" if shown is not None else ""))


@config_group.command("path")
@json_option
def config_path_command() -> None:
    """Where the configuration file is."""
    if state().json:
        emit({"config_file": str(cfg.config_path())})
        return
    click.echo(str(cfg.config_path()))
