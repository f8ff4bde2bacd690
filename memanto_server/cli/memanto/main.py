"""The root of `memanto`: its group, the error handling of every command, and shell completion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from click.shell_completion import get_completion_class

import memanto_server.cli.memanto.config_file as cfg
from memanto_server.cli.memanto.agent import agent
from memanto_server.cli.memanto.config import config_group
from memanto_server.cli.memanto.errors import EXIT_UNREACHABLE, UNREACHABLE_HINT, CliFailure, server_said_no
from memanto_server.cli.memanto.mcp import mcp_command
from memanto_server.cli.memanto.memory import answer, memory, remember
from memanto_server.cli.memanto.output import emit
from memanto_server.cli.memanto.recall import recall
from memanto_server.cli.memanto.session import session, status
from memanto_server.cli.memanto.state import State, json_option, state
from memanto_server.cli.memanto.transfer import export, import_
from memanto_server.client import ConnectionFailedError, MemantoError

SHELLS = ("bash", "zsh", "fish")


class MemantoGroup(click.Group):
    """The root group: turns client errors into messages and exit codes (1 said no, 3 unreachable)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectionFailedError as exc:
            raise CliFailure(exc.detail, EXIT_UNREACHABLE, UNREACHABLE_HINT) from exc
        except MemantoError as exc:
            raise server_said_no(exc) from exc
        except cfg.ConfigError as exc:
            raise CliFailure(str(exc)) from exc


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


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS), required=False)
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
        if shell not in SHELLS:
            shell = "bash"
    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - the choices are Click's own shells
        raise click.UsageError(f"no completion for {shell}")
    script = completer(cli, {}, "memanto", "_MEMANTO_COMPLETE").source()
    if state().json:
        emit({"shell": shell, "script": script})
        return
    click.echo(script)


for command in (agent, session, status, remember, recall, answer, memory, export, import_, config_group, mcp_command):
    cli.add_command(command)


def main() -> None:
    cli.main(prog_name="memanto", complete_var="_MEMANTO_COMPLETE")
