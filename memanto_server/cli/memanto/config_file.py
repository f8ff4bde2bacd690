"""The `memanto` command line's configuration: `~/.memanto/config.json`.

The folder is private (0700) and the file too (0600): it holds the API key and the
session tokens. Every write goes to a temporary file in the same folder that then
replaces the old one, under an advisory lock, so two commands running at once never
leave half a file or lose each other's tokens. `MEMANTO_HOME` names another folder.

Layout (the keys documented clients already read are kept as they are)::

    {
      "server_url": "http://127.0.0.1:8000",
      "api_key": "mk_…",
      "active_agent": "customer-support",
      "active_session_token": "eyJ…",            # the active agent's token, mirrored
      "agents": {"customer-support": {"session_token": "eyJ…", "expires_at": "…Z"}},
      "renew_threshold_minutes": 60,
      "default_hours": null
    }

Keys this module does not know are kept on rewrite.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

try:  # POSIX: an advisory lock around read-modify-write
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
DEFAULT_RENEW_THRESHOLD_MINUTES = 60.0
CONFIG_FILE = "config.json"
LOCK_FILE = ".config.lock"


class ConfigError(Exception):
    """The configuration file cannot be read or a value cannot be set."""


class AgentSession(msgspec.Struct, kw_only=True, omit_defaults=True):
    session_token: str
    expires_at: str | None = None


class Config(msgspec.Struct, kw_only=True):
    server_url: str = DEFAULT_SERVER_URL
    api_key: str | None = None
    active_agent: str | None = None
    active_session_token: str | None = None
    agents: dict[str, AgentSession] = msgspec.field(default_factory=dict)
    renew_threshold_minutes: float = DEFAULT_RENEW_THRESHOLD_MINUTES
    default_hours: float | None = None

    def token_for(self, agent_id: str) -> str | None:
        entry = self.agents.get(agent_id)
        return entry.session_token if entry else None

    def expires_for(self, agent_id: str) -> str | None:
        entry = self.agents.get(agent_id)
        return entry.expires_at if entry else None

    def store_session(self, agent_id: str, token: str, expires_at: str | None) -> None:
        self.agents[agent_id] = AgentSession(session_token=token, expires_at=expires_at)
        self.mirror()

    def forget_session(self, agent_id: str) -> None:
        self.agents.pop(agent_id, None)
        self.mirror()

    def set_active(self, agent_id: str | None) -> None:
        self.active_agent = agent_id
        self.mirror()

    def mirror(self) -> None:
        """`active_session_token` is the active agent's token, as documented clients read it."""
        self.active_session_token = self.token_for(self.active_agent) if self.active_agent else None


# `config set` keys: name -> parser of the command-line value (None clears where allowed).
def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise ConfigError(f"server_url must be an http:// or https:// URL, not {value!r}")
    return value


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError("the value may not be empty (use `memanto config unset` to remove it)")
    return value


def _positive_hours(value: str) -> float:
    number = _number(value)
    if not 0 < number <= 24:
        raise ConfigError("default_hours must be more than 0 and at most 24")
    return number


def _threshold(value: str) -> float:
    number = _number(value)
    if number < 0:
        raise ConfigError("renew_threshold_minutes may not be negative")
    return number


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{value!r} is not a number")
    return number


SETTABLE: dict[str, Any] = {
    "server_url": _url,
    "api_key": _text,
    "active_agent": _text,
    "renew_threshold_minutes": _threshold,
    "default_hours": _positive_hours,
}


def config_dir() -> Path:
    home = os.environ.get("MEMANTO_HOME")
    return Path(home).expanduser() if home else Path.home() / ".memanto"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def _read(path: Path) -> tuple[Config, dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(), {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not raw.strip():
        return Config(), {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a JSON object")
        # Null where a default exists (a hand-edited file) means the default.
        known = {k: v for k, v in data.items() if k in Config.__struct_fields__ and v is not None}
        config = msgspec.convert(known, Config)
    except (ValueError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path} is not a valid configuration: {exc}") from exc
    config.mirror()
    extras = {k: v for k, v in data.items() if k not in Config.__struct_fields__}
    return config, extras


def load() -> Config:
    return _read(config_path())[0]


def _write(path: Path, config: Config, extras: dict[str, Any]) -> None:
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    data = {**extras, **msgspec.to_builtins(config)}
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=folder)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def update() -> Iterator[Config]:
    """Read the newest file under the lock, let the caller change it, write it back atomically."""
    path = config_path()
    try:
        with _locked(path.parent):
            config, extras = _read(path)
            yield config
            config.mirror()
            _write(path, config, extras)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc


def mask(secret: str | None) -> str:
    """`mk_abc…xyz`: enough to recognise a secret, never enough to use it."""
    if not secret:
        return "-"
    if len(secret) <= 12:
        return "…" if len(secret) <= 4 else secret[:2] + "…"
    return f"{secret[:6]}…{secret[-3:]}"


class Effective(msgspec.Struct, kw_only=True, frozen=True):
    """What a command uses: the file's values with the environment laid over them."""

    server_url: str
    server_url_source: str
    api_key: str | None
    api_key_source: str


def effective(config: Config) -> Effective:
    """`MEMANTO_URL` overrides the file's server_url; `MEMANTO_API_KEY` (else `MOORCHEH_API_KEY`) its api_key."""
    url_env = os.environ.get("MEMANTO_URL", "").strip()
    if url_env:
        server_url, url_source = url_env.rstrip("/"), "env MEMANTO_URL"
    else:
        server_url, url_source = config.server_url, "config" if config.server_url != DEFAULT_SERVER_URL else "default"
    for name in ("MEMANTO_API_KEY", "MOORCHEH_API_KEY"):
        value = os.environ.get(name, "").strip()
        if value:
            return Effective(
                server_url=server_url, server_url_source=url_source, api_key=value, api_key_source=f"env {name}"
            )
    return Effective(
        server_url=server_url,
        server_url_source=url_source,
        api_key=config.api_key,
        api_key_source="config" if config.api_key else "unset",
    )
