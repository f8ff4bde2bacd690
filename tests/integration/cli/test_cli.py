"""The `memanto` command line (issue 4, The CLI), run as real processes against a real server.

Every command runs as `python -m memanto_server.cli.memanto …` in a process of its own, with
MEMANTO_HOME in the test's own folder and MEMANTO_URL pointing at one `memanto-server`
started for this module on a free port (real Postgres and Redis underneath).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memanto_server.settings import Settings
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port, running_server, settings_env

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"


@pytest.fixture(scope="module")
def server_url(settings: Settings) -> Iterator[str]:
    with running_server(settings_env(settings)) as base_url:
        yield base_url


class Memanto:
    """`memanto` for one user: a config folder of its own, one server, the owner's key if given."""

    def __init__(self, home: Path, server_url: str, api_key: str | None = None) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMANTO_", "MOORCHEH_"))}
        self.env.update({"MEMANTO_HOME": str(home), "MEMANTO_URL": server_url, "COLUMNS": "200"})
        if api_key is not None:
            self.env["MEMANTO_API_KEY"] = api_key

    def run(self, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memanto_server.cli.memanto", *args],
            env={**self.env, **env},
            cwd=REPO_ROOT,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

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
    assert all(
        set(row) == {"memory_id", "content", "type", "title", "tags", "confidence", "source", "metadata", "created_at"}
        for row in rows
    )

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
