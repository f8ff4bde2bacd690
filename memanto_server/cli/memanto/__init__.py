"""`memanto`: the command line for agents and the people who run them.

Built on the Python client (`memanto_server.client`): every call goes through
`MemantoClient`, and every command that needs a session goes through an `AgentHandle`
carrying the token kept in `~/.memanto/config.json` (`state.py`).

One module per command group: `agent`, `session` (and `status`), `memory` (with
`remember`, `answer`), `recall` (search, and the recalls in time), `transfer` (`export`,
`import`), `config`; `output` prints
(lines, tables, times, numbers, status words), `errors` fails with an exit code, `state`
holds one invocation's configuration, client and sessions, `config_file` reads and writes
the file, and `main` is the root group.

Output follows the documented MEMANTO CLI (`✓ Session activated for agent '…'`, …).
`--json` prints the server's response as JSON and nothing else on stdout. Exit codes:
0 ok, 1 the server said no (its problem `detail` and `code` on stderr), 2 usage,
3 the server cannot be reached.
"""

from memanto_server.cli.memanto.main import cli, main

__all__ = ["cli", "main"]
