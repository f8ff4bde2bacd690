"""docs/benchmarks.md as bench.run writes it: the route tables of both server configurations,
the targets, the live-sessions section (bench.redis_memory's result) and the file's markers.

No servers: results with fixed figures go through `render` and `merge`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from bench import redis_memory
from bench.common import CONFIGS, LOGGING_OFF, PRODUCTION
from bench.report import BEGIN, END, merge, render, section_of
from bench.run import ROUTES, Measured, Paced, RouteResults, WrkResult, parse_wrk


def live_sessions(
    *, after: int = 1_000_000 + 100_000 * 350, big_activate: float = 800.0, config: str | None = None
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
        config=CONFIGS[config] if config else None,
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


ARGS = argparse.Namespace(command_line="python -m bench.run", runs=1, duration=10, connections=32, pgbench_duration=10)


def route(script: str) -> RouteResults:
    return RouteResults(next(r for r in ROUTES if r.script == script))


def results(figures: dict[str, WrkResult]) -> dict[str, RouteResults]:
    found = {}
    for script, run in figures.items():
        found[script] = route(script)
        found[script].runs.append(run)
    return found


def both_configs() -> Measured:
    production = results(
        {
            "health_live": WrkResult(
                15_000, 2.0, 4.0, 150_000, 0, 0, server_cpu_us=66, server_busy=0.99, access_lines=150_032
            ),
            "session_current": WrkResult(
                10_200, 3.1, 4.7, 102_000, 0, 0, server_cpu_us=97, server_busy=0.99, access_lines=102_000
            ),
            "remember": WrkResult(
                5_800,
                5.1,
                8.8,
                58_000,
                0,
                0,
                server_cpu_us=150,
                server_busy=0.9,
                backends_cpu_us=75.5,
                access_lines=58_000,
            ),
            "baseline_session": WrkResult(5_000, 5.9, 27.0, 50_000, 0, 0, server_cpu_us=197, server_busy=0.99),
        }
    )
    off = results(
        {
            "health_live": WrkResult(16_000, 1.9, 3.9, 160_000, 0, 0, server_cpu_us=62, server_busy=0.99),
            "session_current": WrkResult(10_400, 3.0, 4.6, 104_000, 0, 0, server_cpu_us=95, server_busy=0.99),
            "remember": WrkResult(
                6_400, 4.8, 7.5, 64_000, 0, 0, server_cpu_us=142, server_busy=0.915, backends_cpu_us=63.4
            ),
        }
    )
    return Measured(results={"production": production, "off": off}, configs=[PRODUCTION, LOGGING_OFF])


def table(report: str, heading: str) -> str:
    return report.split(heading, 1)[1].split("###", 1)[0]


def test_both_configurations_have_their_table_and_every_ratio() -> None:
    report = render(ARGS, both_configs(), {}, {}, datetime.now(UTC))
    production = table(report, "### Production — the headline")
    off = table(report, "### Logging off — the reference")
    assert report.index("### Production — the headline") < report.index("### Logging off — the reference")
    header = (
        "| route | requests/s | p50 ms | p99 ms | non-2xx / socket errors | x /health/live | x /health/live, "
        "logging off | x Litestar session | x logging off (same route) | server CPU µs/request | x /health/live by "
        "CPU | CPU x logging off | server busy | Postgres + Redis CPU µs/request | access lines per request |"
    )
    assert header in production
    # /health/live: its own floor; 15,000 / 16,000 of the floor with logging off, and of itself with it.
    assert (
        "| `GET /health/live` | 15,000 | 2.00 | 4.00 | 0 | 1.00x (floor) | 0.94x | — | 0.94x | 66 | 1.00x "
        in production
    )
    assert "| 1.06x | 99% | — | 1.000 |" in production  # 150,032 lines for 150,000 requests
    # session/current: 10,200 / 15,000, / 16,000, / Litestar's 5,000, / 10,400 logging off.
    assert "| 10,200 | 3.10 | 4.70 | 0 | 0.68x | 0.64x | 2.04x | 0.98x | 97 |" in production
    assert (
        "| 5,800 | 5.10 | 8.80 | 0 | 0.39x | 0.36x | — | 0.91x | 150 | 0.44x | 1.06x | 90% | 76 | 1.000 |" in production
    )
    assert "| `GET /session (Litestar server-side session, Redis store)` | 5,000 |" in production
    assert "x production (same route)" in off
    assert "| `GET /health/live` | 16,000 | 1.90 | 3.90 | 0 | 1.00x (floor) | 1.00x | — | 1.07x | 62 |" in off
    assert "| 10,400 | 3.00 | 4.60 | 0 | 0.65x | 0.65x | 2.08x | 1.02x | 95 |" in off  # Litestar: the same run's
    assert "| 0.40x | 0.40x | — | 1.10x | 142 | 0.44x | 0.95x | 92% | 63 | — |" in off


def test_a_disturbed_run_says_so() -> None:
    quiet = render(ARGS, both_configs(), {}, {}, datetime.now(UTC))
    assert "A disturbed run" not in quiet
    measured = both_configs()
    measured.results["production"]["health_live"].runs[0].server_busy = 0.4
    report = render(ARGS, measured, {}, {}, datetime.now(UTC))
    assert "**A disturbed run:** the server was busy 40% of the time on `/health/live`" in report
    assert report.index("A disturbed run") < report.index("## Machine")


def test_targets_in_both_configurations() -> None:
    measured = both_configs()
    measured.sessions = {"production": live_sessions(config="production"), "off": live_sessions(config="off")}
    report = render(ARGS, measured, {}, {}, datetime.now(UTC))
    targets = table(report, "### Against the targets (issues 6 and 15)")
    for line in (
        "- Logging and metrics cost ≤ 10% on `GET /health/live` (production ≥ 0.90x logging off): 0.94x — met",
        "on `GET /api/v2/session/current` (production ≥ 0.90x logging off): 0.98x — met",
        "on `POST /api/v2/agents/{agent}/remember` (production ≥ 0.90x logging off): 0.91x — met",
        "- `GET /api/v2/session/current` in production ≥ 0.6x `/health/live` with logging off: 0.64x — met",
        "- `POST /api/v2/agents/{agent}/remember` in production ≥ 0.35x `/health/live` with logging off: 0.36x — met",
        "- `GET /session/current` ≥ 0.6x `/health/live` (production, its own floor): 0.68x — met",
        "- `GET /session/current` ≥ 0.6x `/health/live` (logging off, its own floor): 0.65x — met",
        "- `GET /session/current` ≥ 1.0x Litestar server-side session (logging off): 2.08x — met",
        "- `remember` ≥ 0.35x `/health/live` (production, its own floor): 0.39x — met",
        "≥ 0.90x with 10 (production): `GET /session/current` 0.97x, `POST activate` 0.80x — **missed**",
        "≥ 0.90x with 10 (logging off): `GET /session/current` 0.97x",
    ):
        assert line in targets, line
    assert targets.count("Redis memory per live session ≤ 400 B") == 1  # the memory does not depend on it
    assert "## Live sessions in Redis" in report
    assert "live sessions against 10, production configuration" in report
    assert "live sessions against 10, logging off configuration" in report
    commands = report.split("## Commands", 1)[1]
    assert (
        "python -m bench.redis_memory --sessions 100000 --seconds 10 --rounds 2 --connections 16 --config off"
        in commands
    )


def test_a_missed_cost_target_says_so() -> None:
    measured = both_configs()
    measured.results["production"]["remember"].runs[0].requests_per_second = 5_000
    report = render(ARGS, measured, {}, {}, datetime.now(UTC))
    assert "on `POST /api/v2/agents/{agent}/remember` (production ≥ 0.90x logging off): 0.78x — **missed**" in report


def test_many_connections_and_paced_sections() -> None:
    measured = both_configs()
    saturated = route("session_current")
    saturated.runs.append(parse_wrk(WRK_OUTPUT))
    paced = route("session_current")
    paced.runs.append(WrkResult(4_000, 1.2, 9.6, 40_000, 0, 0))
    measured.many = saturated
    measured.paced = [Paced("session_current", 256, 8_000, 30.5, paced)]
    report = render(ARGS, measured, {}, {}, datetime.now(UTC))
    assert "| 1 | 8,117 | 29.56 | 48.09 | 0 | 0 | 3 | 0 | 2 |" in report
    assert (
        "- `GET /session/current` with 256 connections on one worker, no socket errors or timeouts at "
        "saturation: 5 — **missed**" in report
    )
    assert "with 256 connections, p99 ≤ 10x p50 at half of saturation: 8.0x — met" in report
    assert "BENCH_DELAY_MS=30.500 taskset -c 1 wrk -t1 -c256 -d10s --latency -s bench/wrk/session_current.lua" in report


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:40000
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    31.00ms    5.00ms  90.00ms   80.00%
  Latency Distribution
     50%   29.56ms
     75%   33.00ms
     90%   38.00ms
     99%   48.09ms
  81234 requests in 10.01s, 20.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
Requests/sec:   8117.00
Transfer/sec:      2.00MB
"""


def test_parse_wrk_keeps_each_kind_of_socket_error() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.socket_errors, result.socket_detail) == (81234, 5, (0, 3, 0, 2))
    assert result.lines_per_request != result.lines_per_request  # NaN: not counted


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, "# Benchmarks\n\n{block}"),
        # An earlier report without markers: its generated sections go, any other stays.
        (
            "# Benchmarks\n\nGenerated by ...\n\n## Machine\n\n- CPUs: 2\n\n## Recall quality\n\nRecall@5 0.9\n"
            "\n## Commands\n\n```sh\nx\n```\n",
            "# Benchmarks\n\n{block}\n## Recall quality\n\nRecall@5 0.9\n",
        ),
        (
            "# Benchmarks\n\nIntro by hand.\n\n{begin}\nold\n{end}\n\n## Recall quality\n\nkept\n",
            "# Benchmarks\n\nIntro by hand.\n\n{block}\n## Recall quality\n\nkept\n",
        ),
    ],
)
def test_merge_replaces_only_the_generated_part(existing: str | None, expected: str) -> None:
    block = f"{BEGIN}\n\n## Machine\n\nnew\n\n{END}\n"
    if existing is not None:
        existing = existing.format(begin=BEGIN, end=END)
    merged = merge(existing, "## Machine\n\nnew\n")
    assert merged == expected.format(block=block)
    assert section_of(merged).strip() == "## Machine\n\nnew"
    assert merge(merged, "## Machine\n\nnew\n") == merged  # idempotent
