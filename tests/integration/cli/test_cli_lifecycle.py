"""The memory lifecycle from the `memanto` command line, run as real processes against a real
server: dates on remember, expire and restore, the recalls in time, and export → import
keeping every memory's dates."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memanto_server.cli.memanto import cli as memanto_cli
from memanto_server.client import MemantoClient
from tests.helpers.http import parse_z
from tests.helpers.memanto_cli import Memanto, describe, field
from tests.helpers.owners import OwnerKey, unique_agent

pytestmark = pytest.mark.slow


@pytest.fixture
def memanto(tmp_path: Path, server_url: str, owner: OwnerKey) -> Memanto:
    return Memanto(tmp_path / "memanto-home", server_url, owner.key)


@pytest.fixture
def sdk(server_url: str, owner: OwnerKey) -> Iterator[MemantoClient]:
    """The same owner through the Python client, to put memories in place without a process each."""
    with MemantoClient(server_url, owner.key) as client:
        yield client


def remember(memanto: Memanto, agent: str, text: str, *args: str) -> str:
    return str(memanto.json("remember", text, "--agent", agent, *args)["memory_id"])


def export_rows(memanto: Memanto, agent: str, path: Path) -> dict[str, dict[str, Any]]:
    """The agent's exported memories, by content."""
    memanto.ok("export", str(path), "--agent", agent)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["content"]: row for row in rows}


def expiry(row: dict[str, Any]) -> datetime | None:
    """When a memory stopped (or stops) holding: the earlier of its valid_until and its expiry by hand."""
    ends = [parse_z(row[name]) for name in ("valid_until", "expired_at") if row[name]]
    return min(ends) if ends else None


def recalled(memanto: Memanto, agent: str, *args: str) -> list[str]:
    return [m["content"] for m in memanto.json("recall", *args, "--agent", agent)["memories"]]


def test_export_then_import_keeps_every_memorys_dates(memanto: Memanto, sdk: MemantoClient, tmp_path: Path) -> None:
    source, target = unique_agent("dates-out"), unique_agent("dates-in")
    seed = sdk.agent(source)  # stored through the SDK: the CLI's own remember and expire are tested below
    seed.remember("Joined Acme", type="event", occurred_at="2017-09-01T08:00:00+02:00")
    seed.remember("Worked on billing", occurred_at="2021-03-01", valid_until="2023-01-01")
    hamburg = seed.remember("The office is in Hamburg", occurred_at="2022-05-01")
    badge = seed.remember("Has a temporary badge")
    seed.remember("The contract runs until 2040", valid_until="2040-01-01T00:00:00Z")
    seed.remember("Prefers email", type="preference")
    seed.expire(hamburg.memory_id, reason="moved back to Berlin")
    seed.expire(badge.memory_id)

    original = export_rows(memanto, source, tmp_path / "source.jsonl")
    assert original["Joined Acme"]["occurred_at"] == "2017-09-01T06:00:00Z"
    assert original["Worked on billing"]["status"] == "expired"  # past its valid_until
    assert original["The office is in Hamburg"]["expired_reason"] == "moved back to Berlin"
    assert original["Has a temporary badge"]["expired_at"] is not None
    assert original["Prefers email"]["occurred_at"] == original["Prefers email"]["created_at"]

    imported = memanto.ok("import", str(tmp_path / "source.jsonl"), "--agent", target).stdout
    assert f"✓ Imported into agent '{target}': 6 new, 0 already stored" in imported
    copies = export_rows(memanto, target, tmp_path / "target.jsonl")
    assert sorted(copies) == sorted(original)
    for content, row in original.items():
        copy = copies[content]
        assert copy["memory_id"] != row["memory_id"]
        assert copy["occurred_at"] == row["occurred_at"], content
        assert expiry(copy) == expiry(row), content
        assert copy["status"] == row["status"], content
        assert copy["expired_reason"] == row["expired_reason"], content
        if not row["expired_at"]:
            assert copy["valid_until"] == row["valid_until"], content
    # An expiry by hand arrives as the valid_until it ended at (its reason given by expiring it again).
    assert copies["Has a temporary badge"]["valid_until"] == original["Has a temporary badge"]["expired_at"]

    # What the agent knew at a time is the same in both.
    copy = sdk.agent(target)
    for moment in ("2018-01-01", "2022-06-01", "2024-01-01T00:00:00Z"):
        known = [m.content for m in seed.recall_as_of(moment, limit=100).memories]
        assert [m.content for m in copy.recall_as_of(moment, limit=100).memories] == known, moment

    # Importing again stores nothing and changes nothing.
    again = memanto.json("import", str(tmp_path / "source.jsonl"), "--agent", target)
    assert (again["stored"], again["already_stored"]) == (0, 6)
    assert export_rows(memanto, target, tmp_path / "again.jsonl") == copies


def test_import_of_another_systems_file(memanto: Memanto, tmp_path: Path) -> None:
    agent = unique_agent("dates-foreign")
    lines = [
        {"content": "Dated by its creation", "created_at": "2015-06-01T12:00:00"},
        {"content": "A creation time that is no time", "created_at": 1433160000},
        {"content": "Said to be expired", "status": "expired", "expired_reason": "obsolete"},
        {"content": "Expired at a time", "expired_at": "2016-01-01T00:00:00+01:00"},
    ]
    file = tmp_path / "foreign.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    memanto.ok("import", str(file), "--agent", agent)
    rows = export_rows(memanto, agent, tmp_path / "out.jsonl")
    assert rows["Dated by its creation"]["occurred_at"] == "2015-06-01T12:00:00Z"  # without an offset: UTC
    assert (
        rows["A creation time that is no time"]["occurred_at"] == rows["A creation time that is no time"]["created_at"]
    )
    said = rows["Said to be expired"]
    assert (said["status"], said["expired_reason"]) == ("expired", "obsolete")
    timed = rows["Expired at a time"]
    assert (timed["status"], timed["valid_until"], timed["expired_at"]) == ("expired", "2015-12-31T23:00:00Z", None)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"content": "fine"}) + "\n" + json.dumps({"content": "x", "occurred_at": "yesterday"}))
    refused = memanto.run("import", str(bad), "--agent", unique_agent("dates-bad"))
    assert refused.returncode == 1, describe(refused)
    assert "line 2: occurred_at is not an ISO-8601 time" in refused.stderr
    assert "Imported" not in refused.stdout


def test_remember_expire_restore_and_the_recalls_in_time(memanto: Memanto, sdk: MemantoClient) -> None:
    agent = unique_agent("timeline")
    seed = sdk.agent(agent)
    billing = seed.remember("Worked on billing", occurred_at="2021-03-01T10:00:00+01:00").memory_id
    seed.remember("Leads the payments team", occurred_at="2023-02-01", tags=["career"])
    memanto.ok("config", "set", "active_agent", agent)
    stored = memanto.ok("remember", "Joined the team", "--type", "event", "--occurred-at", "2020-01-15").stdout
    assert field(stored, "Occurred") == "2020-01-15 00:00:00 UTC"
    joined = field(stored, "Memory ID")

    mark = datetime.now(UTC)
    time.sleep(1.1)  # the API's times are whole seconds: the expiry below is in a later second than `mark`
    expired = memanto.ok("memory", "expire", billing, "--reason", "moved to payments").stdout
    assert expired.splitlines()[0] == f"✓ Memory {billing} expired"
    assert field(expired, "Status") == "EXPIRED"
    assert field(expired, "Reason") == "moved to payments"
    shown = memanto.ok("memory", "show", billing).stdout
    assert field(shown, "Occurred") == "2021-03-01 09:00:00 UTC"
    assert (field(shown, "Status"), field(shown, "Reason")) == ("EXPIRED", "moved to payments")
    assert re.search(r"Worked on billing.*EXPIRED", memanto.ok("memory", "list").stdout)

    assert "Worked on billing" not in memanto.ok("recall", "billing").stdout
    assert "Worked on billing" in memanto.ok("recall", "billing", "--include-expired").stdout
    recent = memanto.json("recall", "--recent")
    assert recent["temporal_mode"] == "recent"
    assert [m["content"] for m in recent["memories"]] == ["Joined the team", "Leads the payments team"]
    assert recalled(memanto, agent, "--as-of", "2024-01-01", "--tag", "career") == ["Leads the payments team"]

    as_of = memanto.ok("recall", "--as-of", "2022-01-01").stdout
    assert f"What '{agent}' knew at 2022-01-01 00:00:00 UTC: 2" in as_of
    assert re.search(r"^\s*2021-03-01 09:00\s+fact\s+Worked on billing", as_of, re.MULTILINE), as_of
    assert re.search(r"^\s*2020-01-15 00:00\s+event\s+Joined the team", as_of, re.MULTILINE), as_of
    assert "Leads the payments team" not in as_of
    changes = memanto.ok("recall", "--changed-since", mark.isoformat()).stdout
    assert re.search(r"^\s*EXPIRED\s+2021-03-01 09:00\s+fact\s+Worked on billing", changes, re.MULTILINE), changes
    assert "Joined the team" not in changes
    assert "Nothing of agent" in memanto.ok("recall", "--changed-since", "2999-01-01").stdout

    restored = memanto.ok("memory", "restore", billing).stdout
    assert restored.splitlines()[0] == f"✓ Memory {billing} restored"
    assert field(restored, "Status") == "ACTIVE"
    assert "Worked on billing" in memanto.ok("recall", "billing").stdout

    # Pages: the line under the table is the command for the next one, filters and all.
    first = memanto.ok("recall", "--recent", "--type", "event", "--type", "fact", "--limit", "2").stdout
    more = re.search(r"^More: (.*)$", first, re.MULTILINE)
    assert more, first
    words = shlex.split(more.group(1))
    assert words[:8] == ["memanto", "recall", "--recent", "--type", "event", "--type", "fact", "--limit"]
    second = memanto.ok(*words[1:]).stdout
    assert "More:" not in second
    pages = first + second
    assert all(pages.count(text) == 1 for text in ("Joined the team", "Worked on billing", "Leads the payments team"))
    assert joined in pages


def test_recall_usage_and_refusals(memanto: Memanto) -> None:
    for args in [
        ("recall",),
        ("recall", "query", "--recent"),
        ("recall", "--recent", "--as-of", "2024-01-01"),
        ("recall", "--as-of", "2024-01-01", "--include-expired"),
        ("recall", "--as-of", "last tuesday"),
        ("remember", "text", "--occurred-at", "soon"),
    ]:
        # In-process: a usage error is found before any request (nothing listens at this address).
        result = CliRunner().invoke(memanto_cli, [*args, "--agent", "a"], env={"MEMANTO_URL": "http://127.0.0.1:9"})
        assert result.exit_code == 2, (args, result.output)
        assert "Usage:" in result.output

    agent = unique_agent("timeline-usage")
    missing = memanto.run("memory", "expire", "00000000-0000-4000-8000-000000000000", "--agent", agent)
    assert missing.returncode == 1, describe(missing)
    assert "memory_not_found" in missing.stderr
    memory_id = remember(memanto, agent, "Kept")
    too_long = memanto.run("memory", "expire", memory_id, "--reason", "x" * 201, "--agent", agent)
    assert too_long.returncode == 1, describe(too_long)
    assert "validation_error" in too_long.stderr
    assert memanto.json("memory", "show", memory_id, "--agent", agent)["status"] == "active"
