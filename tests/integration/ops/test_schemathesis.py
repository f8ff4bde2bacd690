"""Generated requests against the OpenAPI document (schemathesis), on a real server.

Every route, positive and negative cases, every check: no 5xx, every status, header, media
type and body as documented, schema-violating requests refused, schema-valid ones accepted.
Token routes get a live session's token with its agent in the path; key routes another
owner's API key, so that activating, ending and deleting that owner's agents (which the run
does) leaves the session alone.

A schema-valid request may still be refused with 422 where the document cannot say why:
a field required in the query *or* the body, a cursor the server did not issue, an extension
past the session's whole lifetime, metadata over 4 KB or with NUL characters, an
Idempotency-Key used before with another memory. 422 is an accepted answer to positive data.

`make test` runs the documented examples and ten generated cases per route, positive and
negative (about 400 requests); `make fuzz` adds the coverage phase (boundary values of every
parameter and field, about 2,500 requests) and the stateful phase, runs longer
(MEMANTO_FUZZ_EXAMPLES, MEMANTO_FUZZ_MAX_TIME, MEMANTO_FUZZ_PHASES) and prints schemathesis' summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import running_server, settings_env

pytestmark = pytest.mark.slow

# `make test`: a bounded run, the examples and a few generated cases per route (the mode is
# schemathesis' default, positive and negative); `make fuzz` sets more, and every phase.
MAX_EXAMPLES = int(os.environ.get("MEMANTO_FUZZ_EXAMPLES", "10"))
PHASES = os.environ.get("MEMANTO_FUZZ_PHASES", "examples,fuzzing")
MAX_TIME = os.environ.get("MEMANTO_FUZZ_MAX_TIME")  # seconds; fuzzing repeats until it is spent
SEED = os.environ.get("MEMANTO_FUZZ_SEED", "20261201")

CONFIG = r"""
generation.database = "none"
request-timeout = 10.0

# The credentials of the document's security schemes: schemathesis applies, per route, a
# combination the route takes (and checks that the route refuses requests without it).
[auth.openapi.SessionToken]
api_key = "${MEMANTO_FUZZ_TOKEN}"

[auth.openapi.ApiKey]
bearer = "${MEMANTO_FUZZ_KEY}"

[checks.positive_data_acceptance]
expected-statuses = ["2XX", 401, 403, 404, 409, 422]

# Memory routes: the live session's agent in the path.
[[operations]]
include-path-regex = "^/api/v2/agents/\\{agent_id\\}/(remember|batch-remember|recall|answer|memories)"
parameters = { agent_id = "${MEMANTO_FUZZ_AGENT}" }
"""


@pytest.mark.skipif(shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None, reason="no CLI")
async def test_generated_requests_find_no_server_error_and_no_violation(
    settings: Settings, owner: OwnerKey, make_owner: Callable[..., Awaitable[OwnerKey]], tmp_path: Path
) -> None:
    keys_owner = await make_owner("fuzz-keys")  # its agents are the key routes' to create and delete
    agent = unique_agent("fuzz")
    log = tmp_path / "server.log"
    with running_server(settings_env(settings), log_path=log) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            activated = await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers)
            assert activated.status_code == 201, activated.text
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{base_url}/schema/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            PHASES,
            "--seed",
            SEED,
            "--workers",
            "1",
            "--no-color",
            *os.environ.get("MEMANTO_FUZZ_ARGS", "").split(),
        ]
        if MAX_TIME:
            command += ["--max-time", MAX_TIME]
        environment = {
            **os.environ,
            "MEMANTO_FUZZ_TOKEN": activated.json()["session_token"],
            "MEMANTO_FUZZ_AGENT": agent,
            "MEMANTO_FUZZ_KEY": keys_owner.key,
        }
        timeout = float(MAX_TIME or 0) + 300
        run = subprocess.run(
            command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout, check=False
        )
    output = run.stdout
    print(output[output.rfind("WARNINGS") :])  # the figures, for `make fuzz` (pytest -s)
    assert run.returncode == 0, output[-12000:] + run.stderr[-3000:]
    server_log = log.read_text()
    assert "Traceback" not in server_log
    assert "status=500" not in server_log
