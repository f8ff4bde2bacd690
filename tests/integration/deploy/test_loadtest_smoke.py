"""The load scenario's quick mode: Locust, headless, a few users for a few seconds against a real server.

Asserts only that it runs and reports: requests of every kind, no failures, the CSV written.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.owners import OwnerKey

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust is not installed (extra `bench`)"),
]

LOCUSTFILE = Path(__file__).resolve().parents[3] / "bench" / "locustfile.py"


def test_loadtest_runs_and_reports(server_url: str, owner: OwnerKey, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MEMANTO_API_KEY": owner.key,
        # Exercise every branch within seconds: extend before every task, rotate agents often.
        "MEMANTO_LOADTEST_EXTEND_BELOW": "1e9",
        "MEMANTO_LOADTEST_ROTATE_AFTER": "4",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            server_url,
            "--users",
            "4",
            "--spawn-rate",
            "4",
            "--run-time",
            "5s",
            "--stop-timeout",
            "5",
            "--only-summary",
            "--csv",
            str(tmp_path / "loadtest"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Aggregated" in output  # the printed summary

    with open(tmp_path / "loadtest_stats.csv", newline="") as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    aggregated = rows.pop("Aggregated")
    assert int(aggregated["Request Count"]) > 20, output
    assert int(aggregated["Failure Count"]) == 0, output
    assert {"activate", "remember", "recall", "session/current", "extend", "deactivate"} <= set(rows), rows.keys()
    assert (tmp_path / "loadtest_failures.csv").exists()
