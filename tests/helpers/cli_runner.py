"""A command line run in the test's own process, as a shell would run its process.

click's `CliRunner` in a thread of its own (so that `asyncio.run` inside a command never meets a
test's event loop), in `cwd` when given, with exactly the environment given for the variables
that start with one of `unset` (the test process's others of those are unset), and an exception
the command did not handle turned into what a process prints: a traceback on stderr, status 1.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path

import click
from click.testing import CliRunner

_cwd_lock = threading.Lock()  # the working folder is the process's: one command at a time changes it


def run_in_process(
    command: click.Command,
    prog_name: str,
    args: tuple[str, ...],
    env: Mapping[str, str],
    *,
    unset: tuple[str, ...],
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    overrides: dict[str, str | None] = {name: None for name in os.environ if name.startswith(unset)}
    overrides.update(env)

    def invoke() -> subprocess.CompletedProcess[str]:
        with _cwd_lock:
            before = Path.cwd()
            os.chdir(cwd or before)
            try:
                result = CliRunner().invoke(command, list(args), input=input, env=overrides, prog_name=prog_name)
            finally:
                os.chdir(before)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess([prog_name, *args], result.exit_code, result.stdout, stderr)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(invoke).result()
