"""The `memanto` command line (issue 4, The CLI), run as real processes against a real server.

Every command runs as `python -m memanto_server.cli.memanto …` in a process of its own, with
MEMANTO_HOME in the test's own folder and MEMANTO_URL pointing at one `memanto-server`
started for this module on a free port (real Postgres and Redis underneath).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyte
import pytest
from click.testing import CliRunner

from memanto_server.cli.memanto import cli as memanto_cli
from tests.helpers.http import parse_z
from tests.helpers.memanto_cli import REPO_ROOT, Memanto, describe, field
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port

pytestmark = pytest.mark.slow

TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"
# The API's times are whole seconds (the fraction dropped): a session stated to end at :45 ends before :46.
SECOND_ROUNDING = 1.3


@pytest.fixture
def memanto(tmp_path: Path, server_url: str, owner: OwnerKey) -> Memanto:
    """A user whose key is in the config file, set with `memanto config set api_key`."""
    cli = Memanto(tmp_path / "memanto-home", server_url)
    cli.ok("config", "set", "api_key", owner.key)
    return cli


def test_seed_life_cycle(memanto: Memanto) -> None:
    agent = unique_agent("support")
    token = _activate(memanto, agent)
    _remember_recall_answer(memanto, agent)
    _session_info_extend_status(memanto, agent, token)
    _deactivate(memanto, agent)

    history = memanto.ok("agent", "sessions", agent).stdout
    assert "DEACTIVATED" in history
    after = memanto.run("remember", "no session now", "--agent", agent)  # a new session, said so
    assert after.returncode == 0, describe(after)
    assert f"Session activated for agent '{agent}'" in after.stderr


def _activate(memanto: Memanto, agent: str) -> str:
    """`agent activate` as documented; the token is kept in the file and never shown whole."""
    activated = memanto.ok("agent", "activate", agent).stdout
    assert activated.splitlines()[0] == f"✓ Session activated for agent '{agent}'"
    assert re.search(r"^Session ID:    sess_\S+$", activated, re.MULTILINE)
    assert re.search(rf"^Created At:    {TIME}$", activated, re.MULTILINE)
    assert re.search(rf"^Expires At:    {TIME}$", activated, re.MULTILINE)
    assert field(activated, "Expires In") in {"6h 0m", "5h 59m"}
    config = memanto.config()
    token: str = config["agents"][agent]["session_token"]
    assert config["active_agent"] == agent
    assert config["active_session_token"] == token
    shown = field(activated, "Session Token")
    assert shown.endswith("...")
    assert token.startswith(shown.removesuffix("..."))
    assert token not in activated
    return token


def _remember_recall_answer(memanto: Memanto, agent: str) -> None:
    stored = memanto.ok("remember", "Customer prefers email", "--type", "preference", "--tag", "contact").stdout
    assert stored.startswith(f"✓ Memory stored for agent '{agent}'")
    email_id = field(stored, "Memory ID")
    assert field(stored, "Type") == "preference"
    memanto.ok("remember", "Billing cycle ends on the 15th", "--title", "Billing", "--tag", "billing")

    recalled = memanto.ok("recall", "email").stdout
    assert "Customer prefers email" in recalled
    assert email_id in recalled
    assert "preference" in recalled
    assert "Billing cycle" not in recalled

    answered = memanto.ok("answer", "How should we contact the customer?").stdout
    assert "Customer prefers email" in answered
    assert "Sources:" in answered


def _session_info_extend_status(memanto: Memanto, agent: str, token: str) -> None:
    info = memanto.ok("session", "info").stdout
    assert info.splitlines()[0] == "Current Session Information"
    assert field(info, "Agent") == agent
    assert field(info, "Status") == "ACTIVE"
    assert re.fullmatch(TIME, field(info, "Created"))
    assert re.fullmatch(TIME, field(info, "Expires"))
    assert field(info, "Remaining") in {"5h 59m", "5h 58m"}
    assert field(info, "Memories").startswith("2 stored")

    extended = memanto.ok("session", "extend", "--hours", "6").stdout
    assert extended.splitlines()[0] == "✓ Session extended successfully"
    assert re.fullmatch(TIME, field(extended, "New Expiry"))
    assert field(extended, "Hours Added") == "6"
    assert memanto.config()["agents"][agent]["session_token"] == token  # extending keeps the token

    status = memanto.ok("status").stdout
    assert field(status, "Server").endswith("(ok: postgres ok, redis ok)")
    assert field(status, "Agent") == agent
    assert field(status, "Status") == "ACTIVE"
    assert field(status, "Remaining").startswith("11h 5")


def _deactivate(memanto: Memanto, agent: str) -> None:
    ended = memanto.ok("agent", "deactivate").stdout
    assert ended.splitlines()[:2] == [f"✓ Session deactivated for agent '{agent}'", "Session Summary:"]
    assert re.search(r"^- Duration: \d+[hms]", ended, re.MULTILINE)
    assert "- Memories Stored: 2" in ended.splitlines()
    retrieved = int(re.search(r"^- Memories Retrieved: (\d+)$", ended, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert retrieved >= 2  # one by recall, at least one as the answer's source
    config = memanto.config()
    assert agent not in config["agents"]
    assert config["active_session_token"] is None


def test_renewal_near_expiry(memanto: Memanto) -> None:
    agent = unique_agent("renew")
    memanto.ok("config", "set", "renew_threshold_minutes", "60")
    activated = memanto.ok("agent", "activate", agent, "--hours", "0.02").stdout  # 72 s
    assert field(activated, "Expires In") == "1m"
    token = memanto.config()["agents"][agent]["session_token"]
    first_expiry = memanto.config()["agents"][agent]["expires_at"]

    info = memanto.ok("session", "info")
    assert "renewed" in info.stderr
    assert field(info.stdout, "Remaining") in {"6h 1m", "6h 0m"}
    config = memanto.config()["agents"][agent]
    assert config["session_token"] == token  # extended, not replaced
    assert config["expires_at"] > first_expiry

    again = memanto.ok("session", "info")  # far from expiry now: no renewal
    assert again.stderr == ""


def test_reactivation_after_expiry(memanto: Memanto) -> None:
    agent = unique_agent("expire")
    memanto.ok("agent", "activate", agent, "--hours", "0.0006")  # about 2 s
    old_token = memanto.config()["agents"][agent]["session_token"]
    time.sleep(3)

    result = memanto.ok("remember", "Stored after the session ran out")
    assert result.stdout.startswith(f"✓ Memory stored for agent '{agent}'")
    notices = result.stderr.strip().splitlines()
    assert len(notices) == 1, result.stderr
    assert notices[0].startswith(f"↻ Session expired; activated a new one for '{agent}'")
    config = memanto.config()
    new_token = config["agents"][agent]["session_token"]
    assert new_token != old_token
    assert config["active_session_token"] == new_token

    found = memanto.json("recall", "ran out")
    assert [m["content"] for m in found["memories"]] == ["Stored after the session ran out"]


def test_config_file_permissions_and_masking(tmp_path: Path, server_url: str, owner: OwnerKey) -> None:
    home = tmp_path / "fresh" / "memanto"
    memanto = Memanto(home, server_url)
    memanto.ok("config", "set", "api_key", owner.key)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "config.json").stat().st_mode) == 0o600
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]  # written atomically

    agent = unique_agent("mask")
    memanto.ok("agent", "activate", agent)
    assert stat.S_IMODE((home / "config.json").stat().st_mode) == 0o600
    token = memanto.config()["active_session_token"]

    shown = memanto.ok("config", "show").stdout
    assert owner.key not in shown
    assert token not in shown
    assert f"{owner.key[:6]}…{owner.key[-3:]}" in shown
    assert f"{token[:6]}…{token[-3:]}" in shown
    assert field(shown, "active_agent") == agent
    as_json = memanto.json("config", "show")
    assert owner.key not in json.dumps(as_json)
    assert as_json["api_key"] == f"{owner.key[:6]}…{owner.key[-3:]}"

    # The environment overrides the file; MOORCHEH_API_KEY is the fallback of MEMANTO_API_KEY.
    keyless = Memanto(tmp_path / "keyless", server_url)
    assert field(keyless.ok("config", "show", MOORCHEH_API_KEY=owner.key).stdout, "api_key").endswith(
        "(env MOORCHEH_API_KEY)"
    )
    listed = keyless.ok("agent", "list", "--json", MOORCHEH_API_KEY=owner.key)
    assert agent in [a["agent_id"] for a in json.loads(listed.stdout)["agents"]]
    refused = keyless.run("agent", "list")
    assert refused.returncode == 1
    assert "missing_credentials" in refused.stderr


def test_json_output(memanto: Memanto) -> None:
    agent = unique_agent("json")
    activated = memanto.json("agent", "activate", agent)
    assert activated["agent_id"] == agent
    assert activated["session_token"] == memanto.config()["active_session_token"]
    stored = memanto.json("remember", "Prefers a morning call", "--type", "preference", "--tag", "calls")
    assert stored["status"] == "stored"
    recalled = memanto.ok("--json", "recall", "morning call")  # the global flag
    assert json.loads(recalled.stdout)["memories"][0]["memory_id"] == stored["memory_id"]
    record = memanto.json("memory", "show", stored["memory_id"])
    assert record["tags"] == ["calls"]
    assert memanto.json("session", "info")["agent_id"] == agent
    assert memanto.json("session", "extend", "--hours", "1")["hours_added"] == 1
    assert memanto.json("status")["session"]["agent_id"] == agent
    assert memanto.json("answer", "When to call?")["sources"]
    assert memanto.json("memory", "list")["count"] == 1
    assert agent in [a["agent_id"] for a in memanto.json("agent", "list", "--limit", "100")["agents"]]
    assert memanto.json("agent", "sessions")["sessions"][0]["end_reason"] == "active"
    assert memanto.json("agent", "deactivate")["memories_stored"] == 1


def test_exit_codes(memanto: Memanto, server_url: str) -> None:
    agent = unique_agent("codes")
    memanto.ok("agent", "activate", agent)

    for args, code in [
        (("memory", "show", "00000000-0000-0000-0000-000000000000"), "memory_not_found"),
        (("memory", "delete", "00000000-0000-0000-0000-000000000000"), "memory_not_found"),
        (("agent", "delete", unique_agent("missing"), "--yes"), "agent_not_found"),
        (("session", "extend", "--hours", "500"), "validation_error"),
    ]:
        result = memanto.run(*args)
        assert result.returncode == 1, describe(result)
        assert result.stdout == ""
        assert code in result.stderr
        assert result.stderr.startswith("Error: ")

    wrong_key = memanto.run("agent", "list", MEMANTO_API_KEY="mk_" + "x" * 43)
    assert wrong_key.returncode == 1
    assert "invalid_api_key" in wrong_key.stderr

    for args in [
        ("recall",),
        ("remember", "text", "--type", "nonsense"),
        ("agent", "activate", agent, "--hours", "-1"),
        ("no-such-command",),
        ("config", "set", "renew_threshold_minutes", "soon"),
    ]:
        result = memanto.run(*args)
        assert result.returncode == 2, describe(result)

    nowhere = memanto.run("status", MEMANTO_URL=f"http://127.0.0.1:{free_port()}")
    assert nowhere.returncode == 3, describe(nowhere)
    assert "cannot reach" in nowhere.stderr
    assert nowhere.stdout == ""


EXPORTED = {
    "memory_id",
    "content",
    "type",
    "title",
    "tags",
    "confidence",
    "source",
    "metadata",
    "created_at",
    "occurred_at",
    "valid_until",
    "expired_at",
    "expired_reason",
    "status",
}


def test_export_then_import_into_a_new_agent(memanto: Memanto, tmp_path: Path) -> None:
    source, target = unique_agent("export"), unique_agent("import")
    memanto.ok("agent", "activate", source)
    memanto.ok("remember", "Invoices go out by email on the 1st.", "--tag", "billing")
    memanto.ok(
        "remember", "Refunds over $500 need a manager.", "--type", "instruction", "--tag", "billing", "--tag", "refunds"
    )
    memanto.ok(
        "remember", "Support hours are 8-18 CET.", "--type", "decision", "--title", "Hours", "--source", "meeting"
    )
    memanto.ok("remember", "Prefers a call, not a chat [urgent]", "--type", "preference", "--confidence", "0.95")

    exported = tmp_path / "memories.jsonl"
    report = memanto.ok("export", str(exported)).stdout
    assert f"Exported 4 memories of agent '{source}'" in report
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(rows) == 4
    assert all(set(row) == EXPORTED for row in rows)
    assert {(row["status"], row["valid_until"], row["expired_at"]) for row in rows} == {("active", None, None)}
    assert all(row["occurred_at"] == row["created_at"] for row in rows)  # about when they were stored

    imported = memanto.ok("import", str(exported), "--agent", target)
    assert f"✓ Imported into agent '{target}': 4 new, 0 already stored" in imported.stdout
    assert "Importing" in imported.stderr  # the progress bar

    again = tmp_path / "again.jsonl"
    memanto.ok("export", str(again), "--agent", target)

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["content"], row["type"], tuple(row["tags"]), row["title"], row["confidence"], row["source"])

    copies = [json.loads(line) for line in again.read_text().splitlines()]
    assert sorted(map(key, copies)) == sorted(map(key, rows))
    assert not {r["memory_id"] for r in copies} & {r["memory_id"] for r in rows}  # new memories of the new agent


def test_interrupted_import_resumed_stores_nothing_twice(memanto: Memanto, tmp_path: Path) -> None:
    agent = unique_agent("resume")
    lines = []
    for i in range(150):
        row: dict[str, Any] = {"content": f"Imported note number {i}", "type": "fact", "tags": [f"batch{i % 3}"]}
        if i % 2:  # half carry an exported memory_id, half are keyed by their line's hash
            row["memory_id"] = f"00000000-0000-4000-8000-{i:012d}"
        lines.append(json.dumps(row))
    whole, first_half = tmp_path / "all.jsonl", tmp_path / "first-half.jsonl"
    whole.write_text("\n".join(lines) + "\n")
    first_half.write_text("\n".join(lines[:75]) + "\n")

    interrupted = memanto.json("import", str(first_half), "--agent", agent)
    assert (interrupted["stored"], interrupted["already_stored"]) == (75, 0)

    resumed = memanto.ok("import", str(whole), "--agent", agent).stdout
    assert f"✓ Imported into agent '{agent}': 75 new, 75 already stored" in resumed
    assert memanto.json("agent", "show", agent)["memory_count"] == 150

    repeated = memanto.json("import", str(whole), "--agent", agent)
    assert (repeated["stored"], repeated["already_stored"]) == (0, 150)
    assert memanto.json("agent", "show", agent)["memory_count"] == 150
    assert sorted(json.loads(line)["content"] for line in _export(memanto, agent, tmp_path)) == sorted(
        json.loads(line)["content"] for line in lines
    )
    hashed = "import:" + hashlib.sha256(lines[0].encode()).hexdigest()
    assert len(hashed) <= 200


def _export(memanto: Memanto, agent: str, tmp_path: Path) -> list[str]:
    path = tmp_path / f"{agent}.jsonl"
    memanto.ok("export", str(path), "--agent", agent)
    return path.read_text().splitlines()


def test_agent_delete_asks_first(memanto: Memanto) -> None:
    agent = unique_agent("delete")
    created = memanto.ok("agent", "create", agent, "--description", "to be deleted").stdout
    assert created.strip() == f"✓ Agent '{agent}' created"

    declined = memanto.run("agent", "delete", agent, input="n\n")
    assert declined.returncode == 1
    assert "Aborted" in declined.stderr
    assert memanto.json("agent", "show", agent)["description"] == "to be deleted"

    accepted = memanto.ok("agent", "delete", agent, input="y\n")
    assert f"✓ Agent '{agent}' deleted" in accepted.stdout
    gone = memanto.run("agent", "show", agent)
    assert gone.returncode == 1
    assert "agent_not_found" in gone.stderr


def test_shell_completion(memanto: Memanto) -> None:
    script = memanto.ok("completion", "bash").stdout
    assert "_MEMANTO_COMPLETE=bash_complete" in script
    assert "_MEMANTO_COMPLETE" in memanto.ok("completion", "zsh").stdout
    completed = memanto.ok(_MEMANTO_COMPLETE="bash_complete", COMP_WORDS="memanto ag", COMP_CWORD="1")
    assert "plain,agent" in completed.stdout.splitlines()


# ---------------------------------------------------------------------------------------
# What a new user tripped over


def _set_stored_expiry(memanto: Memanto, agent: str, expires_at: datetime) -> None:
    """Change the expiry the configuration file keeps for `agent` (as a stale file or a skewed clock would)."""
    path = memanto.home / "config.json"
    data = json.loads(path.read_text())
    data["agents"][agent]["expires_at"] = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(json.dumps(data))


def test_a_replaced_session_is_reported_with_the_servers_reason(
    memanto: Memanto, tmp_path: Path, server_url: str, owner: OwnerKey
) -> None:
    elsewhere = Memanto(tmp_path / "elsewhere", server_url, owner.key)  # the same owner on another machine
    superseded, ended, expired = unique_agent("taken"), unique_agent("stopped"), unique_agent("ran-out")

    # Ran out on the server while the file says it has a day left.
    memanto.ok("agent", "activate", expired, "--hours", "0.0006")  # about 2 s
    runs_out = parse_z(memanto.config()["agents"][expired]["expires_at"])
    _set_stored_expiry(memanto, expired, datetime.now(UTC) + timedelta(days=1))

    # Taken over by an activation elsewhere, while the file says it is live.
    memanto.ok("agent", "activate", superseded)
    elsewhere.ok("agent", "activate", superseded)

    # Ended elsewhere (by API key), while the file says it ran out a minute ago.
    memanto.ok("agent", "activate", ended)
    elsewhere.ok("agent", "deactivate", ended)
    _set_stored_expiry(memanto, ended, datetime.now(UTC) - timedelta(minutes=1))

    time.sleep(max(0.0, (runs_out - datetime.now(UTC)).total_seconds() + SECOND_ROUNDING))
    for agent, word in [(superseded, "superseded"), (ended, "ended"), (expired, "expired")]:
        result = memanto.ok("remember", f"stored after the session was {word}", "--agent", agent)
        notices = result.stderr.strip().splitlines()
        assert len(notices) == 1, result.stderr
        assert notices[0].startswith(f"↻ Session {word}"), notices[0]
        assert f"; activated a new one for '{agent}'" in notices[0]
        assert memanto.config()["agents"][agent]["session_token"] != ""


def _run_on_a_terminal(memanto: Memanto, *args: str, columns: int = 120, rows: int = 30) -> tuple[int, str, list[str]]:
    """`memanto ARGS` with stderr on a pseudo-terminal, as in an interactive shell: its exit code,
    its stdout, and the screen that stderr leaves behind (read by a terminal emulator)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**memanto.env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    written = bytearray()
    with subprocess.Popen(
        [sys.executable, "-m", "memanto_server.cli.memanto", *args],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    ) as process:
        os.close(slave)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(master, 65536) if ready else b""
            except OSError:  # EIO: every end of the terminal's other side is closed
                chunk = b""
            if not chunk:
                break
            written += chunk
        stdout = process.stdout.read().decode() if process.stdout else ""
        code = process.wait(timeout=30)
    os.close(master)
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(bytes(written))
    return code, stdout, [line.rstrip() for line in screen.display if line.strip()]


def test_import_notices_and_the_progress_bar_keep_to_their_own_lines(memanto: Memanto, tmp_path: Path) -> None:
    agent = unique_agent("import-tty")  # no session yet: the first batch activates one, mid-display
    memories = tmp_path / "seven.jsonl"
    memories.write_text("".join(json.dumps({"content": f"Note {i} for the terminal"}) + "\n" for i in range(7)))

    code, stdout, screen = _run_on_a_terminal(memanto, "import", str(memories), "--agent", agent)
    assert code == 0, (stdout, screen)
    assert stdout == f"✓ Imported into agent '{agent}': 7 new, 0 already stored\n"
    notices = [line for line in screen if "Session" in line]
    bars = [line for line in screen if "Importing" in line]
    assert len(notices) == 1, screen
    assert re.fullmatch(rf"✓ Session activated for agent '{agent}' \(expires {TIME}\)", notices[0]), screen
    assert bars, screen
    assert re.fullmatch(r"Importing .* 7/7 \d+:\d{2}:\d{2}", bars[-1]), screen
    assert not [line for line in screen if "Session" in line and "Importing" in line], screen


def test_import_again_reports_what_the_server_stored(memanto: Memanto, tmp_path: Path) -> None:
    agent = unique_agent("reimport")
    memories = tmp_path / "seven.jsonl"
    memories.write_text("".join(json.dumps({"content": f"Imported twice, stored once: {i}"}) + "\n" for i in range(7)))

    first = memanto.ok("import", str(memories), "--agent", agent).stdout
    assert first == f"✓ Imported into agent '{agent}': 7 new, 0 already stored\n"
    again = memanto.ok("import", str(memories), "--agent", agent).stdout
    assert again == f"✓ Imported into agent '{agent}': 0 new, 7 already stored\n"
    assert "Imported 7" not in again
    assert memanto.json("agent", "show", agent)["memory_count"] == 7


def test_status_words_are_capitals_in_every_line_and_table(
    memanto: Memanto, tmp_path: Path, server_url: str, owner: OwnerKey
) -> None:
    agent = unique_agent("words")
    memanto.ok("agent", "activate", agent, "--hours", "0.0006")  # about 2 s, then it runs out
    runs_out = parse_z(memanto.config()["agents"][agent]["expires_at"])
    time.sleep(max(0.0, (runs_out - datetime.now(UTC)).total_seconds() + SECOND_ROUNDING))
    memanto.ok("agent", "activate", agent)  # the expired one is recorded as such
    memanto.ok("agent", "activate", agent)  # supersedes the second
    memanto.ok("agent", "deactivate", agent)
    assert field(memanto.ok("agent", "show", agent).stdout, "Status") == "INACTIVE"
    memanto.ok("agent", "activate", agent)

    history = memanto.ok("agent", "sessions", agent).stdout
    statuses = re.findall(r"^\s*sess_\S+\s+(\S+)", history, re.MULTILINE)
    assert statuses == ["ACTIVE", "DEACTIVATED", "SUPERSEDED", "EXPIRED"], history
    # ACTIVE in `agent show`, `session info` and `status`: test_seed_life_cycle.
    elsewhere = Memanto(tmp_path / "elsewhere", server_url, owner.key)
    assert field(elsewhere.ok("status", "--agent", agent).stdout, "Status") == "INACTIVE (no session on this machine)"


def test_config_set_help_fits_an_80_column_terminal(memanto: Memanto) -> None:
    shown = memanto.ok("config", "set", "--help", COLUMNS="80").stdout
    assert max(len(line) for line in shown.splitlines()) <= 80, shown
    assert shown.startswith("Usage: memanto config set [OPTIONS] KEY VALUE\n")
    for key in ("server_url", "api_key", "active_agent", "renew_threshold_minutes", "default_hours"):
        assert re.search(rf"^\s+{key}\s+\S", shown, re.MULTILINE), f"{key} is not listed whole:\n{shown}"


def test_every_help_fits_an_80_column_terminal() -> None:
    runner = CliRunner()
    groups: list[tuple[str, ...]] = [()]
    while groups:
        path = groups.pop()
        result = runner.invoke(memanto_cli, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, result.output
        too_wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert too_wide == [], f"memanto {' '.join(path)} --help:\n{result.output}"
        command = memanto_cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        groups += [(*path, name) for name in getattr(command, "commands", {})]


def test_whole_numbers_print_whole(memanto: Memanto) -> None:
    def config(*args: str) -> str:  # in-process: the configuration commands need no server
        result = CliRunner().invoke(memanto_cli, ["config", *args], env=memanto.env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert config("set", "default_hours", "6") == "✓ default_hours = 6\n"
    assert json.loads(config("set", "default_hours", "6", "--json")) == {"key": "default_hours", "value": 6}
    assert field(config("show"), "default_hours") == "6"
    assert config("set", "renew_threshold_minutes", "2.5") == "✓ renew_threshold_minutes = 2.5\n"
    assert config("unset", "renew_threshold_minutes") == "✓ renew_threshold_minutes unset (default 60)\n"
    assert json.loads(config("show", "--json"))["renew_threshold_minutes"] == 60

    memanto.ok("agent", "activate", unique_agent("numbers"))
    for given, shown in [(None, "0.8"), ("1", "1")]:
        extra = ("--confidence", given) if given else ()
        memory_id = memanto.json("remember", f"confidence {given}", *extra)["memory_id"]
        assert field(memanto.ok("memory", "show", memory_id).stdout, "Confidence") == shown
    assert field(memanto.ok("session", "extend", "--hours", "2").stdout, "Hours Added") == "2"
