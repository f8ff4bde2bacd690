"""The wrk harness's quick mode (`python -m bench.run --quick`): it runs and it reports.

About 1 s per route, one run, only /health/live, /session/current and remember. Skipped where
`wrk` or `taskset` is not installed (wrk is a Debian package, not a Python one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.backends import REDIS_URL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"),
    pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset is not installed (util-linux)"),
]

ROOT = Path(__file__).resolve().parents[3]
ROWS = {
    "health/live": r"`GET /health/live`",
    "session/current": r"`GET /api/v2/session/current`",
    "remember": r"`POST /api/v2/agents/\{agent\}/remember`",
}


def test_bench_quick_runs_and_reports(tmp_path: Path, postgres_server_url: str) -> None:
    output = tmp_path / "benchmarks.md"
    env = {
        **os.environ,
        "MEMANTO_BENCH_POSTGRES_URL": postgres_server_url,
        "MEMANTO_BENCH_REDIS_URL": REDIS_URL,
    }
    result = subprocess.run(
        # The production configuration alone: the report's shape is the same with both.
        [sys.executable, "-m", "bench.run", "--quick", "--configs", "production", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = output.read_text()
    for section in ("## Machine", "## Versions", "## HTTP routes (wrk)", "## Commands"):
        assert section in report
    for name, route in ROWS.items():
        row = re.search(rf"^\| {route} \| ([\d,.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|", report, re.MULTILINE)
        assert row is not None, f"no row for {name}:\n{report}"
        rps, p50, p99 = (float(value.replace(",", "")) for value in row.groups()[:3])
        assert min(rps, p50, p99) > 0, row.group(0)
        assert int(row.group(4)) == 0, f"{name} had errors: {row.group(0)}"
