"""The report of `python -m bench.run`: its Markdown, and its place in docs/benchmarks.md.

The generated part sits between two markers, so that the file can hold other sections
(written by other benchmarks or by hand) that a run leaves as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from bench import redis_memory
from bench.common import REDIS_URL, Config, pg_server_url

if TYPE_CHECKING:
    from bench.run import Measured, Paced, RouteResults

BEGIN = "<!-- bench.run: begin (written by `make bench`; edit bench/report.py, not this part) -->"
END = "<!-- bench.run: end -->"
TITLE = "# Benchmarks"
# The level-2 headings of the generated part (and of its earlier, unmarked versions): a file
# without markers keeps every other section.
GENERATED_HEADINGS = {
    "## Machine",
    "## Versions",
    "## HTTP routes (wrk)",
    "## Live sessions in Redis",
    "## Backends on their own",
    "## Commands",
}

COST_TARGET = 0.90  # production / logging off, on the routes below
COST_ROUTES = ("health_live", "session_current", "remember")
SPREAD_TARGETS = {"remember": 5.0, "session_current": 10.0}  # p99 / p50 at half of saturation
BUSY_FLOOR = 0.9  # the floor's server busy at least this much: it had its core


# --- where the report goes ------------------------------------------------------------------


def merge(existing: str | None, section: str) -> str:
    """`existing` with its generated part replaced by `section` (or `section` alone)."""
    block = f"{BEGIN}\n\n{section.strip()}\n\n{END}\n"
    if existing and BEGIN in existing and END in existing:
        head, _, rest = existing.partition(BEGIN)
        tail = rest.partition(END)[2].lstrip("\n")
        return head + block + ("\n" + tail if tail.strip() else "")
    kept = _other_sections(existing or "")
    return f"{TITLE}\n\n{block}" + (f"\n{kept}" if kept else "")


def _other_sections(text: str) -> str:
    """The level-2 sections of an unmarked file that the generated part does not contain."""
    kept: list[str] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = line.strip() not in GENERATED_HEADINGS
        if keep:
            kept.append(line)
    return "\n".join(kept).strip() + "\n" if kept else ""


def write_report(path: Path, section: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(merge(path.read_text() if path.exists() else None, section))


# --- machine and versions -------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "CPUs (nproc)": str(os.cpu_count() if not shutil.which("nproc") else _first_line(["nproc"])),
        "CPU model": cpu,
        "memory": memory,
        "kernel": platform.release(),
    }


async def _backend_versions() -> tuple[str, str]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        info = await client.info("server")
        redis_version = str(info.get("redis_version", "?"))
    finally:
        await client.aclose()
    conn = await asyncpg.connect(f"{pg_server_url()}/postgres")
    try:
        postgres_version = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return redis_version, postgres_version


def versions() -> dict[str, str]:
    redis_version, postgres_version = asyncio.run(_backend_versions())
    found = {"Python": platform.python_version()}
    packages = ("litestar", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "asyncpg", "msgspec")
    for package in (*packages, "prometheus-client"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    found["Redis server"] = redis_version
    found["PostgreSQL server"] = postgres_version
    found["wrk"] = _first_line(["wrk", "-v"])
    found["redis-benchmark"] = _first_line(["redis-benchmark", "--version"])
    found["pgbench"] = _first_line(["pgbench", "--version"])
    return found


# --- figures --------------------------------------------------------------------------------


def _ratio(value: float, floor: float | None) -> str:
    return f"{value / floor:.2f}x" if floor and not math.isnan(value) else "—"


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0%}"


def _figure(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


class Figures:
    """Medians of one configuration's routes, and ratios against the run's floors."""

    def __init__(self, results: dict[str, RouteResults]) -> None:
        self.results = results

    def rps(self, script: str) -> float | None:
        result = self.results.get(script)
        return result.median("requests_per_second") if result and result.runs else None

    def cpu(self, script: str) -> float | None:
        result = self.results.get(script)
        return result.cpu_per_request if result and result.runs else None


def _lines_per_request(result: RouteResults) -> str:
    counted = [run for run in result.runs if run.access_lines is not None]
    if not counted:
        return "—"
    lines, requests = sum(run.access_lines or 0 for run in counted), sum(run.requests for run in counted)
    return f"{lines / requests:.3f}" if requests else "—"


# --- the Markdown ---------------------------------------------------------------------------


def _intro(args: argparse.Namespace, measured: Measured, started: datetime) -> list[str]:
    configs = measured.configs
    described = {
        "production": "**production** (`MEMANTO_ENV=production`, `MEMANTO_LOG_FORMAT=json`, `MEMANTO_LOG_LEVEL=INFO`: "
        "one JSON access line per request, Prometheus metrics and request ids; `MEMANTO_EMBEDDING_WORKER=false`: "
        "the memories are embedded by a `memanto-server worker` process of their own, run between the "
        "measurements; as `compose.yaml` runs it)",
        "off": "**logging off** (`MEMANTO_LOG_LEVEL=WARNING`: no access line; metrics, request ids and the "
        "worker apart as in production, since metrics and request ids cannot be turned off)",
    }
    shown = " and ".join(described.get(c.name, f"**{c.label}**") for c in configs)
    headline = f"{configs[0].label} is the headline"
    if len(configs) > 1:
        headline += f", {configs[1].label} the reference"
    return [
        f"Generated by `{args.command_line}` on {started:%Y-%m-%d %H:%M} UTC. Figures are medians of "
        f"{args.runs} run(s) of {args.duration} s per route, {args.connections} connections, one wrk thread.",
        "",
        f"Server configurations: {shown}; {headline}. Every run measures every route in each configuration, "
        "one right after the other (the order alternating from run to run), with the baselines, so ratios "
        "compare like with like; each ratio is given in both configurations.",
        "",
        "Setup: `memanto-server serve --workers 1` (uvicorn, uvloop, httptools) in each configuration and the "
        "Litestar baseline (`bench/baseline_app.py`, same uvicorn options, no access log) pinned to core 0 with "
        "`taskset`; `wrk`, `redis-benchmark` and `pgbench` pinned to core 1; loopback only. Each server's stderr "
        "goes to a file, as a container's goes to its log driver. Redis and Postgres are the machine's own "
        "servers and are not pinned (they share both cores with the rest). Each server uses a fresh database and "
        "a Redis prefix of its own; rate limiting off (the default). How to read every column: `bench/README.md`.",
        "",
    ]


def _disturbance(measured: Measured) -> list[str]:
    """A warning when the floor's server did not have its core: the figures then say more about
    the machine's other work than about the service."""
    floor = measured.results.get(measured.configs[0].name, {}).get("health_live")
    if floor is None or not floor.runs or math.isnan(busy := floor.median("server_busy")) or busy >= BUSY_FLOOR:
        return []
    return [
        f"**A disturbed run:** the server was busy {busy:.0%} of the time on `/health/live` (below "
        f"{BUSY_FLOOR:.0%}: other processes had its core). Its requests/s and their ratios are the machine's "
        "as much as the service's; compare `server CPU µs/request` or repeat on a quiet machine.",
        "",
    ]


def _route_table(measured: Measured, config: Config) -> list[str]:
    """One configuration's table; the first (headline) one also compares with the reference."""
    own = Figures(measured.results.get(config.name, {}))
    first = measured.configs[0]
    reference = measured.configs[1] if len(measured.configs) > 1 else None
    other = reference if config is first else first
    other_figures = Figures(measured.results.get(other.name, {})) if other is not None else None
    off = Figures(measured.results.get("off", {}))
    headline = Figures(measured.results.get(first.name, {}))
    litestar = headline.rps("baseline_session")
    floor, floor_cpu, floor_off = own.rps("health_live"), own.cpu("health_live"), off.rps("health_live")
    other_label = other.label if other is not None else "—"
    lines = [
        f"| route | requests/s | p50 ms | p99 ms | non-2xx / socket errors | x /health/live | "
        f"x /health/live, logging off | x Litestar session | x {other_label} (same route) | server CPU µs/request "
        f"| x /health/live by CPU | CPU x {other_label} | server busy | Postgres + Redis CPU µs/request "
        "| access lines per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for script, result in own.results.items():
        if not result.runs:
            continue
        rps, cpu = result.median("requests_per_second"), result.cpu_per_request
        is_baseline = script == "baseline_session"
        cells = [
            f"`{result.route.name}`",
            f"{rps:,.0f}",
            f"{result.median('p50_ms'):.2f}",
            f"{result.median('p99_ms'):.2f}",
            str(result.errors),
            "—" if is_baseline else ("1.00x (floor)" if script == "health_live" else _ratio(rps, floor)),
            "—" if is_baseline else _ratio(rps, floor_off),
            "1.00x (baseline)" if is_baseline else (_ratio(rps, litestar) if script == "session_current" else "—"),
            "—" if is_baseline or other_figures is None else _ratio(rps, other_figures.rps(script)),
            _figure(cpu),
            "—" if is_baseline or math.isnan(cpu) or floor_cpu is None else f"{floor_cpu / cpu:.2f}x",
            "—" if is_baseline or other_figures is None else _ratio(cpu, other_figures.cpu(script)),
            _percent(result.median("server_busy")),
            _figure(result.median("backends_cpu_us")),
            "—" if is_baseline else _lines_per_request(result),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Requests/s of each run:", ""]
    for result in own.results.values():
        lines.append(f"- `{result.route.name}`: " + ", ".join(f"{r.requests_per_second:,.0f}" for r in result.runs))
    return [*lines, ""]


def _target_lines(measured: Measured) -> list[str]:
    by_name = {c.name: Figures(measured.results.get(c.name, {})) for c in measured.configs}
    production, off = by_name.get("production"), by_name.get("off")
    lines: list[str] = []
    if production and off:
        for script in COST_ROUTES:
            with_logs, without = production.rps(script), off.rps(script)
            if with_logs and without:
                ratio = with_logs / without
                lines.append(
                    f"- Logging and metrics cost ≤ 10% on `{_route_name(measured, script)}` (production ≥ "
                    f"{COST_TARGET:.2f}x logging off): {ratio:.2f}x — {_met(ratio >= COST_TARGET)}"
                )
        floor_off = off.rps("health_live")
        for script, target in (("session_current", 0.6), ("remember", 0.35)):
            value = production.rps(script)
            if value and floor_off:
                lines.append(
                    f"- `{_route_name(measured, script)}` in production ≥ {target}x `/health/live` with logging off: "
                    f"{value / floor_off:.2f}x — {_met(value / floor_off >= target)}"
                )
        for script in ("recall", "recall_text"):
            value = production.rps(script)
            if value and floor_off:
                lines.append(
                    f"- `{_route_name(measured, script)}` in production: {value / floor_off:.2f}x `/health/live` "
                    f"with logging off (no target; {value / (production.rps('health_live') or math.nan):.2f}x "
                    "production's own)"
                )
    lines += _many_connection_targets(measured)
    for config in measured.configs:
        figures = by_name[config.name]
        floor, litestar = (
            figures.rps("health_live"),
            Figures(measured.results[measured.configs[0].name]).rps("baseline_session"),
        )
        current, remember = figures.rps("session_current"), figures.rps("remember")
        if floor and current:
            lines.append(
                f"- `GET /session/current` ≥ 0.6x `/health/live` ({config.label}, its own floor): "
                f"{current / floor:.2f}x — {_met(current / floor >= 0.6)}"
            )
        if litestar and current:
            lines.append(
                f"- `GET /session/current` ≥ 1.0x Litestar server-side session ({config.label}): "
                f"{current / litestar:.2f}x — {_met(current / litestar >= 1.0)}"
            )
        if floor and remember:
            lines.append(
                f"- `remember` ≥ 0.35x `/health/live` ({config.label}, its own floor): {remember / floor:.2f}x — "
                f"{_met(remember / floor >= 0.35)}"
            )
    for paced in measured.paced:
        if paced.script == "remember":
            spread = paced.result.median("p99_ms") / paced.result.median("p50_ms")
            lines.append(
                f"- `remember` p99 ≤ 5x p50 at half of saturation ({measured.configs[0].label}): {spread:.1f}x — "
                f"{_met(spread <= SPREAD_TARGETS['remember'])}"
            )
    for index, result in enumerate(measured.sessions.values()):
        lines += (redis_memory.target_lines if index == 0 else redis_memory.throughput_target_lines)(result)
    return lines or ["- not measured in this run"]


def _many_connection_targets(measured: Measured) -> list[str]:
    lines = []
    if measured.many is not None and measured.many.runs:
        errors = sum(run.socket_errors for run in measured.many.runs)
        lines.append(
            f"- `GET /session/current` with 256 connections on one worker, no socket errors or timeouts at "
            f"saturation: {errors} — {_met(errors == 0)}"
        )
    for paced in measured.paced:
        if paced.script == "session_current":
            spread = paced.result.median("p99_ms") / paced.result.median("p50_ms")
            lines.append(
                f"- `GET /session/current` with {paced.connections} connections, p99 ≤ 10x p50 at half of "
                f"saturation: {spread:.1f}x — {_met(spread <= SPREAD_TARGETS['session_current'])}"
            )
    return lines


def _route_name(measured: Measured, script: str) -> str:
    for results in measured.results.values():
        if script in results:
            return results[script].route.name
    return script


def _many_lines(measured: Measured) -> list[str]:
    many = measured.many
    if many is None or not many.runs:
        return []
    lines = [
        f"### `GET /api/v2/session/current` with 256 connections ({measured.configs[0].label})",
        "",
        "One worker, 256 wrk connections (each kept alive), wrk's default 2 s timeout; saturated first, then paced "
        "at half of that rate (below). Socket errors are wrk's: connect, read, write and timeout (a request not "
        "answered within 2 s).",
        "",
        "| run | requests/s | p50 ms | p99 ms | non-2xx | socket errors: connect | read | write | timeout |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, run in enumerate(many.runs, 1):
        connect, read, write, timeout = run.socket_detail
        lines.append(
            f"| {number} | {run.requests_per_second:,.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | {run.non_2xx} "
            f"| {connect} | {read} | {write} | {timeout} |"
        )
    return [*lines, ""]


def _paced_lines(paced: Paced, args: argparse.Namespace, label: str) -> list[str]:
    result = paced.result
    return [
        f"### `{result.route.name}` at half of saturation, {paced.connections} connections ({label})",
        "",
        f"Saturation: {paced.saturation:,.0f} requests/s with {paced.connections} connections. Paced run: "
        f"{paced.connections} connections, each waiting {paced.delay_ms:.1f} ms on average (uniformly 0 to twice "
        f"that) before each request (wrk's `delay()`, `BENCH_DELAY_MS`, set from a 3 s trial run), aiming at "
        f"{paced.saturation / 2:,.0f} requests/s; medians of {len(result.runs)} run(s) of {args.duration} s.",
        "",
        "| requests/s reached | share of saturation | p50 ms | p99 ms | p99 / p50 |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {result.median('requests_per_second'):,.0f} "
        f"| {result.median('requests_per_second') / paced.saturation:.2f} "
        f"| {result.median('p50_ms'):.2f} | {result.median('p99_ms'):.2f} "
        f"| {result.median('p99_ms') / result.median('p50_ms'):.1f}x |",
        "",
    ]


def _backend_lines(measured: Measured) -> list[str]:
    lines = ["## Backends on their own", ""]
    if measured.redis_results:
        lines += ["| redis-benchmark | requests/s | p50 ms |", "| --- | ---: | ---: |"]
        for name, (rps, p50) in measured.redis_results.items():
            lines.append(f"| {name} | {rps:,.0f} | {p50 if p50 is not None else '—'} |")
        lines.append("")
    if measured.pg_result:
        tps, latency = measured.pg_result
        lines.append(
            f"- pgbench, the `remember` INSERT (`bench/pgbench_insert.sql`, 4 clients, prepared): "
            f"{tps:,.0f} transactions/s, {latency:.2f} ms average latency."
        )
        for config in measured.configs:
            remember = Figures(measured.results.get(config.name, {})).rps("remember")
            if remember:
                lines.append(
                    f"- `remember` over HTTP ({config.label}) reaches {remember / tps:.2f}x of the bare INSERT's rate."
                )
        lines.append("")
    if not measured.redis_results and not measured.pg_result:
        lines += ["Not measured in this run (`--quick` or `--skip-backends`).", ""]
    return lines


def _command_lines(args: argparse.Namespace, measured: Measured) -> list[str]:
    from bench.run import EXTEND_SESSIONS, RECALL_MEMORIES, pgbench_command, redis_benchmark_command, wrk_command

    lines = ["## Commands", "", "```sh", args.command_line]
    scripts = dict.fromkeys(script for results in measured.results.values() for script in results)
    for script in scripts:
        url = "http://127.0.0.1:<baseline port>" if script == "baseline_session" else "http://127.0.0.1:<port>"
        lines.append(shlex.join(wrk_command(script, url, args.duration, args.connections)))
    if measured.many is not None:
        lines.append(shlex.join(wrk_command("session_current", "http://127.0.0.1:<port>", args.duration, 256)))
    for paced in measured.paced:
        command = wrk_command(paced.script, "http://127.0.0.1:<port>", args.duration, paced.connections)
        lines.append(f"BENCH_DELAY_MS={paced.delay_ms:.3f} " + shlex.join(command))
    if measured.redis_results:
        lines.append(shlex.join(redis_benchmark_command()))
    if measured.pg_result:
        lines.append(shlex.join(pgbench_command(args.pgbench_duration)))
    for result in measured.sessions.values():
        lines.append(shlex.join(result.command()))
    return [
        *lines,
        "```",
        "",
        "The Lua scripts are in `bench/wrk/`; their credentials come from the environment (`BENCH_KEY`, "
        "`BENCH_TOKEN`, `BENCH_TOKENS`, `BENCH_AGENT`, `BENCH_RUN`, `BENCH_COOKIE`), prepared by `bench/run.py`: "
        "`activate` creates a distinct agent per request (nothing superseded); `extend` adds 0.001 h per request "
        f"rotating over {EXTEND_SESSIONS} sessions (far from the 168 h cap); `recall` searches an agent holding "
        f"{RECALL_MEMORIES} memories (`mode: hybrid`, the default where semantic recall exists, and `mode: text`; "
        "measured once the embedding backlog is empty); `remember` stores into an agent of its own (its table grows "
        "during the run). Each configuration's server has a database of its own.",
        "",
    ]


def render(
    args: argparse.Namespace,
    measured: Measured,
    machine_info: dict[str, str],
    version_info: dict[str, str],
    started: datetime,
) -> str:
    """The generated part of docs/benchmarks.md."""
    lines = [
        *_intro(args, measured, started),
        *_disturbance(measured),
        "## Machine",
        "",
        *[f"- {name}: {value}" for name, value in machine_info.items()],
        "",
        "## Versions",
        "",
        *[f"- {name}: {value}" for name, value in version_info.items()],
        "",
        "## HTTP routes (wrk)",
        "",
    ]
    for index, config in enumerate(measured.configs):
        role = " — the headline" if index == 0 else " — the reference"
        lines += [f"### {config.label.capitalize()}{role if len(measured.configs) > 1 else ''}", ""]
        lines += _route_table(measured, config)
    lines += ["### Against the targets (issues 6 and 15)", "", *_target_lines(measured), ""]
    lines += _many_lines(measured)
    for paced in measured.paced:
        lines += _paced_lines(paced, args, measured.configs[0].label)
    results = list(measured.sessions.values())
    if results:
        lines += redis_memory.markdown_lines(results[0])
        for result in results[1:]:
            lines += redis_memory.throughput_markdown_lines(result)
    lines += _backend_lines(measured)
    lines += _command_lines(args, measured)
    return "\n".join(lines)


def section_of(text: str) -> str:
    """The generated part of a report file (for tests)."""
    match = re.search(re.escape(BEGIN) + r"\n(.*)\n" + re.escape(END), text, re.DOTALL)
    return match.group(1) if match else text
