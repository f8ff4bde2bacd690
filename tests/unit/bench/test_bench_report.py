"""The live-sessions section of docs/benchmarks.md (bench.redis_memory's result, rendered by bench.run).

No servers: a result with fixed figures goes through `markdown_lines` and `render`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bench import redis_memory
from bench.run import ROUTES, RouteResults, WrkResult, render


def live_sessions(
    *, after: int = 1_000_000 + 100_000 * 350, big_activate: float = 800.0
) -> redis_memory.LiveSessionsResult:
    result = redis_memory.LiveSessionsResult(
        sessions=100_000,
        redis_url="redis://127.0.0.1:40000/0",
        private_redis=True,
        redis_version="7.0.15",
        used_memory_before=1_000_000,
        used_memory_after=after,
        fill_seconds=9.5,
        memory_usage={"mabc123:sess:{owner:support-bot-0000}": 232},
        tool="wrk",
        seconds=10,
        connections=16,
        rounds=2,
        server_core=0,
        client_core=1,
    )
    result.runs["small"] = [{"current": 4000.0, "activate": 1000.0} for _ in range(3)]
    result.runs["big"] = [{"current": 3900.0, "activate": big_activate} for _ in range(2)]
    return result


def test_result_figures() -> None:
    result = live_sessions()
    assert result.bytes_per_session == 350
    assert result.medians["big", "current"] == 3900
    assert result.ratios == {"current": 3900 / 4000, "activate": 0.8}
    assert result.memory_met
    assert result.ratio_met("current")
    assert not result.ratio_met("activate")
    assert result.command() == [
        *("python", "-m", "bench.redis_memory", "--sessions", "100000"),
        *("--seconds", "10", "--rounds", "2", "--connections", "16"),
    ]


def test_markdown_section() -> None:
    text = "\n".join(redis_memory.markdown_lines(live_sessions(after=1_000_000 + 100_000 * 450)))
    assert text.startswith("## Live sessions in Redis\n")
    assert "**450 B**" in text
    assert "target ≤ 400 B: **missed**" in text
    assert "232 B" in text
    assert "| `GET /api/v2/session/current` | 4,000, 4,000, 4,000 | 4,000 | 3,900, 3,900 | 3,900 | 0.97 | met |" in text
    assert "| 0.80 | **missed** |" in text
    assert "python -m bench.redis_memory --sessions 100000 --seconds 10 --rounds 2 --connections 16" in text


def test_render_places_the_section_and_the_targets() -> None:
    args = argparse.Namespace(
        command_line="python -m bench.run", runs=2, duration=10, connections=32, pgbench_duration=10
    )
    report = render(args, {}, None, None, None, {}, {}, datetime.now(UTC), live_sessions(big_activate=950.0))
    assert report.index("### Against the targets of issue 6") < report.index("## Live sessions in Redis")
    assert report.index("## Live sessions in Redis") < report.index("## Backends on their own")
    targets = report.split("### Against the targets of issue 6", 1)[1].split("##", 1)[0]
    assert "- Redis memory per live session ≤ 400 B (100,000 live sessions): 350 B — met" in targets
    assert "with 100,000 + 10 live sessions ≥ 0.90x with 10" in targets
    assert "0.95x — met" in targets
    commands = report.split("## Commands", 1)[1]
    assert "python -m bench.redis_memory --sessions 100000" in commands

    without = render(args, {}, None, None, None, {}, {}, datetime.now(UTC))
    assert "## Live sessions in Redis" not in without
    assert "- not measured in this run" in without


def test_route_rows_show_where_the_cpu_went() -> None:
    args = argparse.Namespace(
        command_line="python -m bench.run", runs=1, duration=10, connections=32, pgbench_duration=10
    )
    figures = {
        "health_live": WrkResult(16_000, 1.9, 3.9, 160_000, 0, 0, server_cpu_us=62, server_busy=0.99),
        "remember": WrkResult(
            6_400, 4.8, 7.5, 64_000, 0, 0, server_cpu_us=142, server_busy=0.915, backends_cpu_us=63.4
        ),
    }
    results = {
        script: RouteResults(next(r for r in ROUTES if r.script == script), [run]) for script, run in figures.items()
    }
    report = render(args, results, None, None, None, {}, {}, datetime.now(UTC))
    assert "| server busy | Postgres + Redis CPU µs/request |" in report
    assert "| `GET /health/live` | 16,000 | 1.90 | 3.90 | 0 | 1.00x (floor) | — | 62 | 1.00x | 99% | — |" in report
    assert "| 0.40x | — | 142 | 0.44x | 92% | 63 |" in report
    assert "`remember` ≥ 0.35x `/health/live`: 0.40x — met" in report
