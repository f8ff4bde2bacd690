"""Throughput and latency of the hot routes with wrk, with baselines measured in the same run.

    python -m bench.run [--duration 10] [--connections 32] [--runs 3] [--quick] [--output docs/benchmarks.md]
                        [--sessions 100000] [--skip-sessions] [--skip-backends] [--routes a,b]

Starts `memanto-server serve` (one worker) on a database of its own and the Litestar
server-side-session app of `bench/baseline_app.py`, each pinned to core 0 (`taskset`), and
drives them with `wrk` pinned to core 1, loopback only, one route at a time for a fixed
duration. Every run measures every route, so the floor (`GET /health/live` of the same server)
and the Litestar baseline share the run's conditions; the report gives the median over the
runs. Then `bench/redis_memory.py` measures Redis memory per live session with `--sessions`
live sessions, and `current` / `activate` throughput with that many against 10 (its own server
and private `redis-server`, `--duration` seconds per run, `--runs` rounds), and
`redis-benchmark` and a `pgbench` insert script give the backends' own limits.
Writes a Markdown report (machine, versions, commands, tables) to `--output`.

`--quick` (the smoke test): 2 s per route, one run, only health/live, session/current and
remember, no live-sessions measurement, no Litestar or backend baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import asyncpg
import httpx

from bench import redis_memory
from bench.common import (
    REDIS_URL,
    ROOT,
    create_key,
    database_url,
    drop_database,
    free_port,
    fresh_database,
    pg_server_url,
)

WRK_DIR = ROOT / "bench" / "wrk"
PGBENCH_SCRIPT = ROOT / "bench" / "pgbench_insert.sql"
SERVER_CORE = "0"
CLIENT_CORE = "1"
PGBENCH_OWNER = "00000000-0000-4000-8000-00000000b0b0"
EXTEND_SESSIONS = 64
RECALL_MEMORIES = 300


@dataclass(frozen=True)
class Route:
    name: str  # as shown in the report
    script: str  # bench/wrk/<script>.lua
    target: str  # "memanto" or "baseline"


ROUTES = [
    Route("GET /health/live", "health_live", "memanto"),
    Route("GET /api/v2/session/current", "session_current", "memanto"),
    Route("POST /api/v2/agents/{agent}/remember", "remember", "memanto"),
    Route("POST /api/v2/agents/{agent}/recall", "recall", "memanto"),
    Route("POST /api/v2/agents/{agent}/activate", "activate", "memanto"),
    Route("POST /api/v2/session/extend", "extend", "memanto"),
    Route("GET /session (Litestar server-side session, Redis store)", "baseline_session", "baseline"),
]
QUICK_ROUTES = {"health_live", "session_current", "remember"}


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_us: float = math.nan  # server CPU time (user + system) per request, microseconds
    server_busy: float = math.nan  # server CPU time over wall time: 1.0 = its core saturated
    backends_cpu_us: float = math.nan  # CPU time of every postgres and redis-server process, per request


@dataclass
class RouteResults:
    route: Route
    runs: list[WrkResult] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)

    @property
    def cpu_per_request(self) -> float:
        return self.median("server_cpu_us")

    @property
    def errors(self) -> int:
        return sum(run.non_2xx + run.socket_errors for run in self.runs)


# --- wrk ------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """wrk --latency's text report → figures (latencies in milliseconds)."""
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE))
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if rps is None or total is None or "50" not in percentiles or "99" not in percentiles:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=_duration_ms(percentiles["50"]),
        p99_ms=_duration_ms(percentiles["99"]),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
    )


def wrk_command(script: str, url: str, duration: int, connections: int) -> list[str]:
    return [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str((WRK_DIR / f"{script}.lua").relative_to(ROOT)),
        url,
    ]


def run_wrk(script: str, url: str, duration: int, connections: int, env: dict[str, str]) -> WrkResult:
    command = wrk_command(script, url, duration, connections)
    pid = SERVER_PIDS.get(url)
    cpu_before = cpu_seconds(pid) if pid else math.nan
    backends_before, started = backends_cpu_seconds(), time.monotonic()
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60
    )
    elapsed, backends = time.monotonic() - started, backends_cpu_seconds() - backends_before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    result = parse_wrk(done.stdout)
    if pid and result.requests:
        server = cpu_seconds(pid) - cpu_before
        result.server_cpu_us = server / result.requests * 1e6
        result.server_busy = server / elapsed
    if result.requests:
        result.backends_cpu_us = backends / result.requests * 1e6
    return result


# --- servers --------------------------------------------------------------------------------

# Each server's process id by base URL: its CPU time per request is the figure that other
# processes on the machine disturb least (throughput falls when they take the core; the
# work done per request hardly changes).
SERVER_PIDS: dict[str, int] = {}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _name_and_cpu(pid: int | str) -> tuple[str, float]:
    """A process's name and user + system CPU time (all its threads), from /proc."""
    name, _, rest = Path(f"/proc/{pid}/stat").read_text().partition(" (")[2].rpartition(")")
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    return _name_and_cpu(pid)[1]


def backends_cpu_seconds() -> float:
    """CPU time of every `postgres` and `redis-server` process on the machine (they are
    not pinned: what they spend is taken from the same two cores as the server's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, cpu = _name_and_cpu(entry.name)
            except OSError:  # gone meanwhile
                continue
            if name.startswith("postgres") or name == "redis-server":
                total += cpu
    return total


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start ({url})")
        time.sleep(0.1)


@contextlib.contextmanager
def pinned_process(
    command: list[str], env: dict[str, str], ready_url: str, stop_signal: int = signal.SIGTERM
) -> Iterator[int]:
    """`command` pinned to the server core, until it answers 200 at `ready_url`; stopped after.
    Yields its process id (taskset execs the command)."""
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, *command], env=env, cwd=ROOT)
    try:
        _wait_ready(process, ready_url)
        yield process.pid
    finally:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMANTO_", "BASELINE_"))}


@contextlib.contextmanager
def memanto(db_url: str, redis_prefix: str, wrapper: list[str] | None = None) -> Iterator[str]:
    """As bench.common.server (the same settings), pinned to the server core; `wrapper`
    (a profiler) runs the server as its child and is stopped with SIGINT, as at a terminal."""
    port = free_port()
    env = _clean_env()
    env.update(
        {
            "MEMANTO_DATABASE_URL": db_url,
            "MEMANTO_REDIS_URL": REDIS_URL,
            "MEMANTO_REDIS_PREFIX": redis_prefix,
            "MEMANTO_SECRET_KEY": secrets.token_urlsafe(48),
            "MEMANTO_LOG_LEVEL": "WARNING",
        }
    )
    command = [sys.executable, "-m", "memanto_server.cli.server", "serve", "--port", str(port), "--workers", "1"]
    base = f"http://127.0.0.1:{port}"
    stop = signal.SIGINT if wrapper else signal.SIGTERM
    with pinned_process([*(wrapper or []), *command], env, f"{base}/health/ready", stop) as pid:
        if not wrapper:
            SERVER_PIDS[base] = pid
        yield base


@contextlib.contextmanager
def baseline(namespace: str) -> Iterator[str]:
    port = free_port()
    env = {**_clean_env(), "BASELINE_REDIS_URL": REDIS_URL, "BASELINE_NAMESPACE": namespace}
    base = f"http://127.0.0.1:{port}"
    with pinned_process(
        [sys.executable, "-m", "bench.baseline_app", "--port", str(port)], env, f"{base}/health/live"
    ) as pid:
        SERVER_PIDS[base] = pid
        yield base


def clear_redis(pattern: str) -> None:
    """Delete the run's Redis keys (its own prefix)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


# --- preparation ----------------------------------------------------------------------------


def _activate(client: httpx.Client, key: str, agent: str) -> str:
    response = client.post(f"/api/v2/agents/{agent}/activate", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return str(response.json()["session_token"])


def prepare_memanto(base: str, key: str, run_id: str, *, recall: bool, extend: bool) -> dict[str, dict[str, str]]:
    """Sessions and data for each script; returns each script's environment."""
    with httpx.Client(base_url=base, timeout=10) as client:
        current_token = _activate(client, key, "bench-current")
        remember_token = _activate(client, key, "bench-remember")
        envs = {
            "health_live": {},
            "session_current": {"BENCH_KEY": key, "BENCH_TOKEN": current_token},
            "remember": {"BENCH_AGENT": "bench-remember", "BENCH_TOKEN": remember_token},
            "activate": {"BENCH_KEY": key, "BENCH_RUN": f"act-{run_id}"},
        }
        if recall:
            recall_token = _activate(client, key, "bench-recall")
            topics = ["billing email", "phone call", "invoice refund", "support hours", "contract renewal"]
            for i in range(RECALL_MEMORIES):
                body = {
                    "content": f"Note {i}: the customer asked about {topics[i % len(topics)]} on day {i % 30}",
                    "type": "fact",
                    "tags": [topics[i % len(topics)].split()[0]],
                }
                client.post(
                    "/api/v2/agents/bench-recall/remember", headers={"X-Session-Token": recall_token}, json=body
                ).raise_for_status()
            envs["recall"] = {"BENCH_AGENT": "bench-recall", "BENCH_TOKEN": recall_token}
        if extend:
            tokens = [_activate(client, key, f"bench-extend-{i}") for i in range(EXTEND_SESSIONS)]
            envs["extend"] = {"BENCH_TOKENS": ",".join(tokens)}
    return envs


def baseline_cookie(base: str) -> str:
    response = httpx.post(f"{base}/login", timeout=10)
    response.raise_for_status()
    return f"session={response.cookies['session']}"


# --- backends -------------------------------------------------------------------------------


def redis_benchmark_command() -> list[str]:
    url = httpx.URL(REDIS_URL)
    command = ["taskset", "-c", CLIENT_CORE, "redis-benchmark", "-q", "-n", "100000", "-t", "get,set"]
    return [*command, "-h", url.host or "127.0.0.1", "-p", str(url.port or 6379)]


def run_redis_benchmark() -> dict[str, tuple[float, float | None]]:
    done = subprocess.run(redis_benchmark_command(), capture_output=True, text=True, timeout=300, check=True)
    results: dict[str, tuple[float, float | None]] = {}
    for name, rps, p50 in re.findall(
        r"(\w+): ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", done.stdout.replace("\r", "\n")
    ):
        results[name] = (float(rps), float(p50) if p50 else None)
    return results


PGBENCH_DB = "memanto_bench_pgbench"


def pgbench_command(duration: int) -> list[str]:
    return [
        "taskset",
        "-c",
        CLIENT_CORE,
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-f",
        str(PGBENCH_SCRIPT.relative_to(ROOT)),
        "-T",
        str(duration),
        "-c",
        "4",
        database_url(PGBENCH_DB),
    ]


async def prepare_pgbench() -> None:
    url = await fresh_database(PGBENCH_DB)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'pgbench')", PGBENCH_OWNER)
        await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'pgbench-agent')", PGBENCH_OWNER)
    finally:
        await conn.close()


def run_pgbench(duration: int) -> tuple[float, float]:
    asyncio.run(prepare_pgbench())
    try:
        done = subprocess.run(
            pgbench_command(duration), cwd=ROOT, capture_output=True, text=True, timeout=duration + 120, check=True
        )
    finally:
        asyncio.run(drop_database(PGBENCH_DB))
    tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
    latency = re.search(r"^latency average = ([\d.]+) ms", done.stdout, re.MULTILINE)
    if tps is None or latency is None:
        raise RuntimeError(f"unexpected pgbench output:\n{done.stdout}")
    return float(tps.group(1)), float(latency.group(1))


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
    for package in ("litestar", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "asyncpg", "msgspec"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    found["Redis server"] = redis_version
    found["PostgreSQL server"] = postgres_version
    found["wrk"] = _first_line(["wrk", "-v"])
    found["redis-benchmark"] = _first_line(["redis-benchmark", "--version"])
    found["pgbench"] = _first_line(["pgbench", "--version"])
    return found


# --- report ---------------------------------------------------------------------------------


def _ratio(value: float, floor: float | None) -> str:
    return f"{value / floor:.2f}x" if floor else "—"


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0%}"


def _figure(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def render(
    args: argparse.Namespace,
    results: dict[str, RouteResults],
    paced: Paced | None,
    redis_results: dict[str, tuple[float, float | None]] | None,
    pg_result: tuple[float, float] | None,
    machine_info: dict[str, str],
    version_info: dict[str, str],
    started: datetime,
    sessions: redis_memory.LiveSessionsResult | None = None,
) -> str:
    floor = results["health_live"].median("requests_per_second") if "health_live" in results else None
    litestar = results["baseline_session"].median("requests_per_second") if "baseline_session" in results else None
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{args.command_line}` on {started:%Y-%m-%d %H:%M} UTC. Figures are medians of "
        f"{args.runs} run(s) of {args.duration} s per route, {args.connections} connections, one wrk thread; "
        "every run measures every route, baselines included, so ratios compare like with like.",
        "",
        "Setup: `memanto-server serve --workers 1` (uvicorn, uvloop, httptools, no access log) and the "
        "Litestar baseline (`bench/baseline_app.py`, same uvicorn options) pinned to core "
        f"{SERVER_CORE} with `taskset`; `wrk`, `redis-benchmark` and `pgbench` pinned to core {CLIENT_CORE}; "
        "loopback only. Redis and Postgres are the machine's own servers and are not pinned "
        "(they share both cores with the rest). The server uses a fresh database and a Redis prefix of its own; "
        "rate limiting off (the default).",
        "",
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
        "| route | requests/s | p50 ms | p99 ms | non-2xx / socket errors | x /health/live | x Litestar session "
        "| server CPU µs/request | x /health/live by CPU | server busy | Postgres + Redis CPU µs/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    floor_cpu = results["health_live"].cpu_per_request if "health_live" in results else math.nan
    for script, result in results.items():
        rps = result.median("requests_per_second")
        ratio_floor = "1.00x (floor)" if script == "health_live" else _ratio(rps, floor)
        if script == "baseline_session":
            ratio_floor = "—"  # another process; its own floor is not measured
        ratio_litestar = _ratio(rps, litestar) if script == "session_current" else "—"
        if script == "baseline_session":
            ratio_litestar = "1.00x (baseline)"
        cpu = result.cpu_per_request
        ratio_cpu = "—" if script == "baseline_session" or math.isnan(cpu) else f"{floor_cpu / cpu:.2f}x"
        lines.append(
            f"| `{result.route.name}` | {rps:,.0f} | {result.median('p50_ms'):.2f} | {result.median('p99_ms'):.2f} "
            f"| {result.errors} | {ratio_floor} | {ratio_litestar} | {cpu:,.0f} | {ratio_cpu} "
            f"| {_percent(result.median('server_busy'))} | {_figure(result.median('backends_cpu_us'))} |"
        )
    lines += ["", "Requests/s of each run:", ""]
    for result in results.values():
        per_run = ", ".join(f"{run.requests_per_second:,.0f}" for run in result.runs)
        lines.append(f"- `{result.route.name}`: {per_run}")

    lines += ["", "### Against the targets of issue 6", ""]
    targets = []
    if floor and "session_current" in results:
        current = results["session_current"].median("requests_per_second")
        targets.append(("`GET /session/current` ≥ 0.6x `/health/live`", current / floor, 0.6))
        if litestar:
            targets.append(("`GET /session/current` ≥ 1.0x Litestar server-side session", current / litestar, 1.0))
    if floor and "remember" in results:
        remember = results["remember"].median("requests_per_second")
        targets.append(("`remember` ≥ 0.35x `/health/live`", remember / floor, 0.35))
    target_lines = [
        f"- {label}: {value:.2f}x — {'met' if value >= target else '**missed**'}" for label, value, target in targets
    ]
    if paced is not None:
        spread = paced.result.median("p99_ms") / paced.result.median("p50_ms")
        target_lines.append(
            f"- `remember` p99 ≤ 5x p50 at half of saturation: {spread:.1f}x — {'met' if spread <= 5 else '**missed**'}"
        )
    if sessions is not None:
        target_lines += redis_memory.target_lines(sessions)
    lines += target_lines or ["- not measured in this run"]

    if paced is not None:
        result = paced.result
        lines += [
            "",
            "### `remember` at half of saturation",
            "",
            f"Saturation (above): {paced.saturation:,.0f} requests/s. Paced run: {PACED_CONNECTIONS} connections, each "
            f"waiting {paced.delay_ms:.1f} ms on average (uniformly 0 to twice that) before each request (wrk's "
            f"`delay()`, `BENCH_DELAY_MS`, set from a 3 s trial run), aiming at "
            f"{paced.saturation / 2:,.0f} requests/s; medians of {len(result.runs)} run(s) of {args.duration} s.",
            "",
            "| requests/s reached | share of saturation | p50 ms | p99 ms | p99 / p50 |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {result.median('requests_per_second'):,.0f} "
            f"| {result.median('requests_per_second') / paced.saturation:.2f} "
            f"| {result.median('p50_ms'):.2f} | {result.median('p99_ms'):.2f} "
            f"| {result.median('p99_ms') / result.median('p50_ms'):.1f}x |",
        ]

    lines.append("")
    if sessions is not None:
        lines += redis_memory.markdown_lines(sessions)

    lines += ["## Backends on their own", ""]
    if redis_results:
        lines += ["| redis-benchmark | requests/s | p50 ms |", "| --- | ---: | ---: |"]
        for name, (rps, p50) in redis_results.items():
            lines.append(f"| {name} | {rps:,.0f} | {p50 if p50 is not None else '—'} |")
        lines.append("")
    if pg_result:
        tps, latency = pg_result
        lines += [
            f"- pgbench, the `remember` INSERT (`bench/pgbench_insert.sql`, 4 clients, prepared): "
            f"{tps:,.0f} transactions/s, {latency:.2f} ms average latency.",
        ]
        if "remember" in results:
            remember = results["remember"].median("requests_per_second")
            lines.append(f"- `remember` over HTTP reaches {remember / tps:.2f}x of the bare INSERT's rate.")
        lines.append("")
    if not redis_results and not pg_result:
        lines += ["Not measured in this run (`--quick` or `--skip-backends`).", ""]

    lines += ["## Commands", "", "```sh", args.command_line]
    for script in results:
        url = "http://127.0.0.1:<baseline port>" if script == "baseline_session" else "http://127.0.0.1:<port>"
        lines.append(shlex.join(wrk_command(script, url, args.duration, args.connections)))
    if redis_results:
        lines.append(shlex.join(redis_benchmark_command()))
    if pg_result:
        lines.append(shlex.join(pgbench_command(args.pgbench_duration)))
    if sessions is not None:
        lines.append(shlex.join(sessions.command()))
    lines += [
        "```",
        "",
        "The Lua scripts are in `bench/wrk/`; their credentials come from the environment (`BENCH_KEY`, "
        "`BENCH_TOKEN`, `BENCH_TOKENS`, `BENCH_AGENT`, `BENCH_RUN`, `BENCH_COOKIE`), prepared by `bench/run.py`: "
        "`activate` creates a distinct agent per request (nothing superseded); `extend` adds 0.001 h per request "
        f"rotating over {EXTEND_SESSIONS} sessions (far from the 168 h cap); `recall` searches an agent holding "
        f"{RECALL_MEMORIES} memories; `remember` stores into an agent of its own (its table grows during the run).",
        "",
    ]
    return "\n".join(lines)


# --- paced ----------------------------------------------------------------------------------

PACED_CONNECTIONS = 16


@dataclass
class Paced:
    saturation: float
    delay_ms: float
    result: RouteResults


def measure_paced(saturated: RouteResults, url: str, env: dict[str, str], args: argparse.Namespace) -> Paced:
    """`remember` again at about half its saturated rate: latency where a service is meant to run.

    wrk has no fixed-rate mode; each connection waits about `delay` before each request, so
    the rate is connections / (delay + latency). A short first run measures that latency at
    about this load, and the delay is set from it; the rate reached is reported, not assumed.
    """
    saturation = saturated.median("requests_per_second")
    target = saturation / 2
    paced_env = {**env, "BENCH_DELAY_MS": f"{PACED_CONNECTIONS * 1000 / target:.3f}"}
    trial = run_wrk("remember", url, 3, PACED_CONNECTIONS, paced_env)
    latency_ms = max(0.0, PACED_CONNECTIONS * 1000 / trial.requests_per_second - float(paced_env["BENCH_DELAY_MS"]))
    delay_ms = max(0.0, PACED_CONNECTIONS * 1000 / target - latency_ms)
    paced_env["BENCH_DELAY_MS"] = f"{delay_ms:.3f}"
    result = RouteResults(saturated.route)
    for number in range(args.runs):
        outcome = run_wrk("remember", url, args.duration, PACED_CONNECTIONS, paced_env)
        result.runs.append(outcome)
        print(
            f"paced {number + 1}/{args.runs} remember: {outcome.requests_per_second:,.0f} req/s "
            f"({outcome.requests_per_second / saturation:.2f} of saturation), p50 {outcome.p50_ms:.2f} ms, "
            f"p99 {outcome.p99_ms:.2f} ms",
            flush=True,
        )
    return Paced(saturation, delay_ms, result)


# --- main -----------------------------------------------------------------------------------


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per route and run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the report gives medians (default 3)")
    parser.add_argument("--pgbench-duration", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 s, one run, three routes, no baselines")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--routes",
        help="comma-separated scripts to measure (default all): " + ",".join(r.script for r in ROUTES),
    )
    parser.add_argument("--skip-backends", action="store_true", help="no redis-benchmark / pgbench baselines")
    parser.add_argument(
        "--sessions",
        type=int,
        default=redis_memory.DEFAULT_SESSIONS,
        help="live sessions for the Redis memory and many-sessions throughput measurement (default 100000)",
    )
    parser.add_argument(
        "--skip-sessions", action="store_true", help="no live-sessions measurement (bench.redis_memory)"
    )
    args = parser.parse_args(argv)
    args.command_line = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.command_line = args.command_line.strip()
    if args.quick:
        args.duration, args.runs = 2, 1
    measure_sessions = not (args.quick or args.skip_sessions)
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if not args.quick:
        missing += [tool for tool in ("redis-benchmark", "pgbench") if shutil.which(tool) is None]
    if measure_sessions and shutil.which("redis-server") is None:
        missing.append("redis-server")
    if missing:
        sys.exit(f"bench.run: missing tools: {', '.join(missing)}")
    if measure_sessions and args.sessions < 1:
        sys.exit("bench.run: --sessions must be at least 1 (or --skip-sessions)")

    # SIGTERM (and SIGINT, which a background job ignores) end the run through the `finally`
    # clauses below: servers stopped, database dropped, Redis keys removed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    run_id = secrets.token_hex(4)
    db_name = f"memanto_bench_load_{run_id}"
    redis_prefix = f"memanto-bench-{run_id}:"
    baseline_namespace = f"memanto-bench-baseline-{run_id}"
    chosen = set(args.routes.split(",")) if args.routes else {r.script for r in ROUTES}
    if unknown := chosen - {r.script for r in ROUTES}:
        sys.exit(f"bench.run: unknown routes: {', '.join(sorted(unknown))}")
    routes = [r for r in ROUTES if r.script in chosen and (not args.quick or r.script in QUICK_ROUTES)]
    results = {route.script: RouteResults(route) for route in routes}
    paced: Paced | None = None

    async def setup() -> str:
        url = await fresh_database(db_name)
        conn = await asyncpg.connect(url)
        try:
            _, key = await create_key(conn)
        finally:
            await conn.close()
        return key

    key = asyncio.run(setup())
    try:
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(memanto(database_url(db_name), redis_prefix))
            envs = prepare_memanto(base, key, run_id, recall="recall" in results, extend="extend" in results)
            urls = dict.fromkeys(envs, base)
            if "baseline_session" in results:
                baseline_base = stack.enter_context(baseline(baseline_namespace))
                envs["baseline_session"] = {"BENCH_COOKIE": baseline_cookie(baseline_base)}
                urls["baseline_session"] = baseline_base
            if not args.quick:  # warm both servers up (imports, pools, caches) before measuring
                for script in results:
                    run_wrk(script, urls[script], 2, args.connections, {**envs[script], "BENCH_RUN": f"warm-{run_id}"})
            for number in range(args.runs):
                for script, result in results.items():
                    env = dict(envs[script])
                    if script == "activate":
                        env["BENCH_RUN"] = f"act-{run_id}-{number}"
                    outcome = run_wrk(script, urls[script], args.duration, args.connections, env)
                    result.runs.append(outcome)
                    print(
                        f"run {number + 1}/{args.runs} {script}: {outcome.requests_per_second:,.0f} req/s, "
                        f"p50 {outcome.p50_ms:.2f} ms, p99 {outcome.p99_ms:.2f} ms, "
                        f"server CPU {outcome.server_cpu_us:,.0f} µs/request, "
                        f"errors {outcome.non_2xx + outcome.socket_errors}",
                        flush=True,
                    )
            if "remember" in results and not args.quick:
                paced = measure_paced(results["remember"], base, envs["remember"], args)
    finally:
        asyncio.run(drop_database(db_name))
        clear_redis(f"{redis_prefix}*")
        clear_redis(f"{baseline_namespace}*")

    sessions = None
    if measure_sessions:  # after the wrk runs, on a server and a redis-server of its own (both stopped after)
        print(
            f"live sessions in Redis (bench.redis_memory): {args.sessions:,} sessions, {args.duration} s per run, "
            f"{args.runs} round(s)",
            flush=True,
        )
        sessions = asyncio.run(
            redis_memory.measure(
                args.sessions,
                seconds=args.duration,
                rounds=args.runs,
                use_wrk=True,
                echo=lambda line: print(line, flush=True),
            )
        )

    backends = not (args.quick or args.skip_backends)
    redis_results = run_redis_benchmark() if backends else None
    pg_result = run_pgbench(args.pgbench_duration) if backends else None
    machine_info = machine()
    machine_info["load average (1 min) before / after the run"] = f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}"
    report = render(args, results, paced, redis_results, pg_result, machine_info, versions(), started, sessions)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
