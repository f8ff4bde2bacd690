"""`memanto` run for one user: its own config folder, one server, a key if given.

Commands run in the test's own process through click's `CliRunner` (a process per command would
spend most of its time importing); the terminal tests, which need a real terminal's bytes, start
`memanto` as a process of its own, and `test_the_console_script_is_installed` runs the installed script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from memanto_server.cli.memanto import cli
from tests.helpers.cli_runner import run_in_process

REPO_ROOT = Path(__file__).resolve().parents[2]


class Memanto:
    """`memanto` for one user: a config folder of its own, one server, the owner's key if given."""

    def __init__(self, home: Path, server_url: str, api_key: str | None = None) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMANTO_", "MOORCHEH_"))}
        self.env.update({"MEMANTO_HOME": str(home), "MEMANTO_URL": server_url, "COLUMNS": "200"})
        if api_key is not None:
            self.env["MEMANTO_API_KEY"] = api_key

    def run(self, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        """One command, as `memanto ARGS` in a shell with this user's environment would run it.

        The environment is the user's alone: every `MEMANTO_`/`MOORCHEH_` variable of the test
        process is unset for the command. An exception the command did not handle is what a process
        would print: a traceback on stderr and exit status 1."""
        return run_in_process(cli, "memanto", args, {**self.env, **env}, unset=("MEMANTO_", "MOORCHEH_"), input=input)

    def ok(self, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, input=input, **env)
        assert result.returncode == 0, describe(result)
        return result

    def json(self, *args: str) -> Any:
        result = self.ok(*args, "--json")
        return json.loads(result.stdout)

    def config(self) -> dict[str, Any]:
        return json.loads((self.home / "config.json").read_text())  # type: ignore[no-any-return]


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def field(output: str, label: str) -> str:
    """The value of a `Label:   value` line."""
    match = re.search(rf"^{re.escape(label)}:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{output}"
    return match.group(1).strip()
