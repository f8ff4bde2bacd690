"""How `memanto` fails: a message on stderr, a hint when there is an obvious next step, an exit code.

Exit codes: 0 ok, 1 the server said no (its problem `detail` and `code`) or a local file
problem, 2 usage (Click's own), 3 the server cannot be reached.
"""

from __future__ import annotations

from typing import IO, Any

import click

from memanto_server.client import MemantoError

EXIT_SERVER_SAID_NO = 1
EXIT_UNREACHABLE = 3
# The server's 401 codes for a session token that no longer works.
SESSION_ENDED_CODES = frozenset({"session_expired", "session_ended", "session_superseded", "invalid_token"})
UNREACHABLE_HINT = "is it running? Set its address with `memanto config set server_url URL` or MEMANTO_URL"


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


def server_said_no(exc: MemantoError) -> CliFailure:
    """The server's problem as the CLI reports it: its detail, its code and status, a hint."""
    label = ", ".join(str(part) for part in (exc.code, exc.status) if part)
    message = f"{exc.detail} ({label})" if label else exc.detail
    hint = None
    if exc.code in {"missing_credentials", "invalid_api_key"}:
        hint = "set an API key: `memanto config set api_key mk_…` or MEMANTO_API_KEY in the environment"
    elif exc.code in SESSION_ENDED_CODES:
        hint = "start a new session: `memanto agent activate AGENT`"
    return CliFailure(message, EXIT_SERVER_SAID_NO, hint)
