"""Throughput and latency of the hot routes with wrk, in the configuration users run and with
logging off, with baselines measured in the same run.

    python -m bench.run [--duration 10] [--connections 32] [--runs 3] [--quick] [--output docs/benchmarks.md]
                        [--configs production,off] [--routes a,b] [--sessions 100000] [--skip-sessions]
                        [--skip-backends]

Starts two `memanto-server serve` processes (one worker each) on databases of their own:
**production** (`MEMANTO_ENV=production`, the JSON access log at INFO, metrics and request
ids, as `compose.yaml` runs it; the headline) and **logging off** (`MEMANTO_LOG_LEVEL=WARNING`,
no access line; the reference), plus the Litestar server-side-session app of
`bench/baseline_app.py`. Each is pinned to core 0 (`taskset`) and driven by `wrk` pinned to
core 1, loopback only, one route at a time for a fixed duration; the two configurations
measure each route one right after the other (in alternating order from run to run), so
that their ratio compares like with like. The servers' stderr goes to files, as a
container's goes to its log driver, and the access lines written during each run are
counted against the requests wrk saw answered.

Then, on the production server: `GET /session/current` with 256 connections at saturation
(socket errors and timeouts counted) and at half of that rate (paced), and `remember` at half
of its saturated rate. `bench/redis_memory.py` measures Redis memory per live session and
`current` / `activate` throughput with `--sessions` live sessions against 10, in each
configuration; `redis-benchmark` and a `pgbench` insert script give the backends' own
limits. Writes the report (machine, versions, commands, tables) into `--output`, between the
markers of `bench/report.py` when the file has them (other sections are kept).

`--quick` (the smoke test): 1 s per route, one run, only health/live, session/current and
remember, no 256-connection, paced or live-sessions measurement, no Litestar or backend
baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench import redis_memory
from bench.common import (
    CONFIGS,
    PRODUCTION,
    REDIS_URL,
    ROOT,
    Config,
    create_key,
    database_url,
    drop_database,
    free_port,
    fresh_database,
    stop_process,
    unembedded,
)

WRK_DIR = ROOT / "bench" / "wrk"
PGBENCH_SCRIPT = ROOT / "bench" / "pgbench_insert.sql"
SERVER_CORE = "0"
CLIENT_CORE = "1"
PGBENCH_OWNER = "00000000-0000-4000-8000-00000000b0b0"
EXTEND_SESSIONS = 64
RECALL_MEMORIES = 300
ACCESS_MARK = b'"logger":"memanto.access"'


@dataclass(frozen=True)
class Route:
    name: str  # as shown in the report
    script: str  # bench/wrk/<script>.lua
    target: str  # "memanto" or "baseline"


ROUTES = [
    Route("GET /health/live", "health_live", "memanto"),
    Route("GET /api/v2/session/current", "session_current", "memanto"),
    Route("POST /api/v2/agents/{agent}/remember", "remember", "memanto"),
    Route("POST /api/v2/agents/{agent}/recall (hybrid)", "recall", "memanto"),
    Route("POST /api/v2/agents/{agent}/recall (full text)", "recall_text", "memanto"),
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
    socket_errors: int  # connect + read + write + timeout
    socket_detail: tuple[int, int, int, int] = (0, 0, 0, 0)  # connect, read, write, timeout
    server_cpu_us: float = math.nan  # server CPU time (user + system) per request, microseconds
    server_busy: float = math.nan  # server CPU time over wall time: 1.0 = its core saturated
    backends_cpu_us: float = math.nan  # CPU time of every postgres and redis-server process, per request
    access_lines: int | None = None  # access lines the server wrote during the run (None: not counted)

    @property
    def lines_per_request(self) -> float:
        return self.access_lines / self.requests if self.access_lines is not None and self.requests else math.nan


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


# config name → script → results
Results = dict[str, dict[str, RouteResults]]


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
    detail = (0, 0, 0, 0)
    if socket:
        connect, read, write, timeout = (int(n) for n in socket.groups())
        detail = (connect, read, write, timeout)
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=_duration_ms(percentiles["50"]),
        p99_ms=_duration_ms(percentiles["99"]),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(detail),
        socket_detail=detail,
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
    server = SERVERS.get(url)
    cpu_before = cpu_seconds(server.pid) if server else math.nan
    lines_before = server.log.access_lines() if server and server.log else 0
    backends_before, started = backends_cpu_seconds(), time.monotonic()
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60
    )
    elapsed, backends = time.monotonic() - started, backends_cpu_seconds() - backends_before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    result = parse_wrk(done.stdout)
    if server and result.requests:
        cpu = cpu_seconds(server.pid) - cpu_before
        result.server_cpu_us = cpu / result.requests * 1e6
        result.server_busy = cpu / elapsed
    if server and server.log:
        result.access_lines = server.log.settled_access_lines() - lines_before
    if result.requests:
        result.backends_cpu_us = backends / result.requests * 1e6
    return result


# --- servers --------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerLog:
    """A server's stderr in a file, and the access lines written to it so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "ab")  # noqa: SIM115 - closed by `close`
        self._offset = 0
        self._counted = 0

    def access_lines(self) -> int:
        """Access lines written since the start (a line still being written counts next time)."""
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        self._counted += complete.count(ACCESS_MARK)
        return self._counted

    def settled_access_lines(self, quiet: float = 0.3, timeout: float = 10) -> int:
        """The count once the writer has flushed: no new access line for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        count = self.access_lines()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            latest = self.access_lines()
            if latest == count:
                break
            count = latest
        return count

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.handle.close()


@dataclass
class Server:
    pid: int
    log: ServerLog | None
    db_url: str = ""
    # Where its memories are embedded: "in-process" (its own worker), "apart" (a `memanto-server
    # worker` process, run by drain_embeddings between measurements) or "off" (no embedder).
    embeddings: str = "in-process"


def embeddings_of(config: Config) -> str:
    if config.env.get("MEMANTO_EMBEDDER") == "none":
        return "off"
    return "apart" if config.env.get("MEMANTO_EMBEDDING_WORKER") == "false" else "in-process"


# Each server by base URL: its process id (its CPU time per request is the figure that other
# processes on the machine disturb least) and its log.
SERVERS: dict[str, Server] = {}


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


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: ServerLog | None) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start ({url})" + (f":\n{log.tail()}" if log else ""))
        time.sleep(0.1)


@contextlib.contextmanager
def pinned_process(
    command: list[str],
    env: dict[str, str],
    ready_url: str,
    stop_signal: int = signal.SIGTERM,
    log: ServerLog | None = None,
) -> Iterator[int]:
    """`command` pinned to the server core, until it answers 200 at `ready_url`; stopped after.
    Yields its process id (taskset execs the command). Its output goes to `log` when given."""
    output = log.handle if log else None
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command], env=env, cwd=ROOT, stdout=output, stderr=output
    )
    try:
        _wait_ready(process, ready_url, log)
        yield process.pid
    finally:
        stop_process(process, stop_signal)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMANTO_", "BASELINE_"))}


@contextlib.contextmanager
def memanto(
    db_url: str,
    redis_prefix: str,
    wrapper: list[str] | None = None,
    config: Config = PRODUCTION,
    log_dir: Path | None = None,
) -> Iterator[str]:
    """`memanto-server serve`, one worker, in `config`, pinned to the server core; its stderr
    in `log_dir` (the terminal without one). `wrapper` (a profiler) runs the server as its
    child and is stopped with SIGINT, as at a terminal."""
    port = free_port()
    env = _clean_env()
    env.update(
        {
            "MEMANTO_DATABASE_URL": db_url,
            "MEMANTO_REDIS_URL": REDIS_URL,
            "MEMANTO_REDIS_PREFIX": redis_prefix,
            "MEMANTO_SECRET_KEY": secrets.token_urlsafe(48),
            **config.env,
        }
    )
    command = [sys.executable, "-m", "memanto_server.cli.server", "serve", "--port", str(port), "--workers", "1"]
    base = f"http://127.0.0.1:{port}"
    stop = signal.SIGINT if wrapper else signal.SIGTERM
    log = ServerLog(log_dir / f"memanto-{config.name}.log") if log_dir else None
    try:
        with pinned_process([*(wrapper or []), *command], env, f"{base}/health/ready", stop, log) as pid:
            if not wrapper:
                SERVERS[base] = Server(pid, log, db_url, embeddings_of(config))
            yield base
    finally:
        SERVERS.pop(base, None)
        if log:
            log.close()


@contextlib.contextmanager
def baseline(namespace: str) -> Iterator[str]:
    port = free_port()
    env = {**_clean_env(), "BASELINE_REDIS_URL": REDIS_URL, "BASELINE_NAMESPACE": namespace}
    base = f"http://127.0.0.1:{port}"
    with pinned_process(
        [sys.executable, "-m", "bench.baseline_app", "--port", str(port)], env, f"{base}/health/live"
    ) as pid:
        SERVERS[base] = Server(pid, None)
        yield base
    SERVERS.pop(base, None)


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


def wait_for_embeddings(client: httpx.Client, timeout: float = 120) -> bool:
    """Until the server's embedding backlog (`memanto_embedding_backlog`, where semantic recall
    exists) is empty, so that recall is measured on embedded memories; at once without it.
    Whether there was a backlog to wait for."""
    deadline = time.monotonic() + timeout
    waited = False
    while time.monotonic() < deadline:
        found = re.search(r"^memanto_embedding_backlog(?:\{[^}]*\})? (\S+)$", client.get("/metrics").text, re.M)
        if found is None or float(found.group(1)) == 0:
            return waited
        waited = True
        time.sleep(0.5)
    raise RuntimeError(f"the embedding backlog did not drain in {timeout:.0f} s")


def embed_apart(db_url: str, timeout: float) -> bool:
    """A `memanto-server worker` process on `db_url` (as compose's `worker` service runs it)
    until nothing waits for an embedding; whether there was anything to embed."""
    if asyncio.run(unembedded(db_url)) == 0:
        return False
    env = {**_clean_env(), "MEMANTO_DATABASE_URL": db_url, "MEMANTO_REDIS_URL": REDIS_URL}
    env["MEMANTO_LOG_LEVEL"] = "WARNING"
    command = [sys.executable, "-m", "memanto_server.cli.server", "worker"]
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=log)
        try:
            while asyncio.run(unembedded(db_url)) > 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    error = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"the embedding worker did not drain {db_url}:\n{error}")
                time.sleep(0.5)
        finally:
            stop_process(process, timeout=30)
    return True


async def vacuum(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("VACUUM (ANALYZE) memories")
    finally:
        await conn.close()


def drain_embeddings(bases: list[str], timeout: float = 900) -> None:
    """Until every server's embedding backlog is empty. `remember`'s runs leave thousands of
    memories to embed: measured meanwhile, the next routes would count the embedding work
    (ONNX in the server, the UPDATEs and the vector index in Postgres) as theirs. A server
    whose worker is apart (the production configuration, as compose runs it) has a worker
    process for the time it takes; one with its own worker is waited for. Then its memories
    are vacuumed: thousands of rows just updated would otherwise have autovacuum start
    during the next measurement."""
    waited = False
    for base in bases:
        server = SERVERS.get(base)
        if server is not None and server.embeddings == "off":
            continue
        if server is not None and server.embeddings == "apart":
            drained = embed_apart(server.db_url, timeout)
        else:
            with httpx.Client(base_url=base, timeout=10) as client:
                drained = wait_for_embeddings(client, timeout)
        if drained and server is not None and server.db_url:
            asyncio.run(vacuum(server.db_url))
        waited = waited or drained
    if waited:
        time.sleep(0.5)  # the writer's last lines (the /metrics requests') are flushed before the run


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
            drain_embeddings([base])
            envs["recall"] = envs["recall_text"] = {"BENCH_AGENT": "bench-recall", "BENCH_TOKEN": recall_token}
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


# --- paced and many connections -------------------------------------------------------------

PACED_CONNECTIONS = {"remember": 16, "session_current": 256}
MANY_CONNECTIONS = 256


@dataclass
class Paced:
    script: str
    connections: int
    saturation: float  # requests/s at saturation with as many connections
    delay_ms: float
    result: RouteResults


def measure_paced(
    saturated: RouteResults, connections: int, url: str, env: dict[str, str], args: argparse.Namespace
) -> Paced:
    """A route again at about half its saturated rate: latency where a service is meant to run.

    wrk has no fixed-rate mode; each connection waits about `delay` before each request, so
    the rate is connections / (delay + latency). A short first run measures that latency at
    about this load, and the delay is set from it; the rate reached is reported, not assumed.
    """
    script = saturated.route.script
    saturation = saturated.median("requests_per_second")
    target = saturation / 2
    paced_env = {**env, "BENCH_DELAY_MS": f"{connections * 1000 / target:.3f}"}
    trial = run_wrk(script, url, 3, connections, paced_env)
    latency_ms = max(0.0, connections * 1000 / trial.requests_per_second - float(paced_env["BENCH_DELAY_MS"]))
    delay_ms = max(0.0, connections * 1000 / target - latency_ms)
    paced_env["BENCH_DELAY_MS"] = f"{delay_ms:.3f}"
    result = RouteResults(saturated.route)
    for number in range(args.runs):
        outcome = run_wrk(script, url, args.duration, connections, paced_env)
        result.runs.append(outcome)
        print(
            f"paced {number + 1}/{args.runs} {script} ({connections} connections): "
            f"{outcome.requests_per_second:,.0f} req/s ({outcome.requests_per_second / saturation:.2f} of "
            f"saturation), p50 {outcome.p50_ms:.2f} ms, p99 {outcome.p99_ms:.2f} ms",
            flush=True,
        )
    return Paced(script, connections, saturation, delay_ms, result)


def measure_many_connections(
    route: Route, url: str, env: dict[str, str], args: argparse.Namespace
) -> tuple[RouteResults, Paced]:
    """`route` with 256 connections on one worker: saturated (socket errors, timeouts), then paced."""
    saturated = RouteResults(route)
    for number in range(args.runs):
        outcome = run_wrk(route.script, url, args.duration, MANY_CONNECTIONS, env)
        saturated.runs.append(outcome)
        connect, read, write, timeout = outcome.socket_detail
        print(
            f"{MANY_CONNECTIONS} connections {number + 1}/{args.runs} {route.script}: "
            f"{outcome.requests_per_second:,.0f} req/s, p50 {outcome.p50_ms:.2f} ms, p99 {outcome.p99_ms:.2f} ms, "
            f"socket errors connect {connect} read {read} write {write} timeout {timeout}, non-2xx {outcome.non_2xx}",
            flush=True,
        )
    return saturated, measure_paced(saturated, MANY_CONNECTIONS, url, env, args)


# --- main -----------------------------------------------------------------------------------


@dataclass
class Measured:
    """Everything a run measured, for the report."""

    results: Results
    configs: list[Config]
    many: RouteResults | None = None  # session/current with 256 connections, saturated
    paced: list[Paced] = field(default_factory=list)
    sessions: dict[str, redis_memory.LiveSessionsResult] = field(default_factory=dict)  # by config name
    redis_results: dict[str, tuple[float, float | None]] | None = None
    pg_result: tuple[float, float] | None = None


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per route and run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the report gives medians (default 3)")
    parser.add_argument("--pgbench-duration", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 s, one run, three routes, no baselines")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--configs",
        default="production,off",
        help="server configurations, the headline first (default production,off): " + ",".join(CONFIGS),
    )
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
    parser.add_argument(
        "--skip-latency", action="store_true", help="no 256-connection and paced (half of saturation) runs"
    )
    args = parser.parse_args(argv)
    args.command_line = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.command_line = args.command_line.strip()
    if args.quick:
        args.duration, args.runs = 1, 1
    return args


def check_args(args: argparse.Namespace) -> tuple[list[Config], list[Route]]:
    names = [name for name in args.configs.split(",") if name]
    if not names or (unknown := set(names) - set(CONFIGS)):
        sys.exit(f"bench.run: --configs takes {', '.join(CONFIGS)}")
    chosen = set(args.routes.split(",")) if args.routes else {r.script for r in ROUTES}
    if unknown := chosen - {r.script for r in ROUTES}:
        sys.exit(f"bench.run: unknown routes: {', '.join(sorted(unknown))}")
    routes = [r for r in ROUTES if r.script in chosen and (not args.quick or r.script in QUICK_ROUTES)]
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if not args.quick:
        missing += [tool for tool in ("redis-benchmark", "pgbench") if shutil.which(tool) is None]
    if not (args.quick or args.skip_sessions) and shutil.which("redis-server") is None:
        missing.append("redis-server")
    if missing:
        sys.exit(f"bench.run: missing tools: {', '.join(missing)}")
    if not (args.quick or args.skip_sessions) and args.sessions < 1:
        sys.exit("bench.run: --sessions must be at least 1 (or --skip-sessions)")
    return [CONFIGS[name] for name in names], routes


def measure_routes(
    args: argparse.Namespace,
    configs: list[Config],
    routes: list[Route],
    key: str,
    run_id: str,
    log_dir: Path,
    measured: Measured,
) -> None:
    """Every route in every configuration, `args.runs` times; then the latency runs."""
    with contextlib.ExitStack() as stack:
        urls: dict[tuple[str, str], str] = {}
        envs: dict[tuple[str, str], dict[str, str]] = {}
        memanto_routes = [r for r in routes if r.target == "memanto"]
        scripts = {r.script for r in memanto_routes}
        bases: list[str] = []  # every memanto server of the run
        for config in configs:
            db_url = database_url(f"memanto_bench_load_{run_id}_{config.name}")
            prefix = f"memanto-bench-{run_id}-{config.name}:"
            base = stack.enter_context(memanto(db_url, prefix, config=config, log_dir=log_dir))
            bases.append(base)
            recall = bool(scripts & {"recall", "recall_text"})
            for script, env in prepare_memanto(base, key, run_id, recall=recall, extend="extend" in scripts).items():
                urls[config.name, script], envs[config.name, script] = base, env
        if any(r.target == "baseline" for r in routes):
            baseline_base = stack.enter_context(baseline(f"memanto-bench-baseline-{run_id}"))
            urls[configs[0].name, "baseline_session"] = baseline_base
            envs[configs[0].name, "baseline_session"] = {"BENCH_COOKIE": baseline_cookie(baseline_base)}
        plan = [(config, route) for route in routes for config in configs if (config.name, route.script) in urls]
        for config, route in plan:
            measured.results.setdefault(config.name, {})[route.script] = RouteResults(route)
        if not args.quick:  # warm every server up (imports, pools, caches) before measuring
            for config, route in plan:
                env = {**envs[config.name, route.script], "BENCH_RUN": f"warm-{run_id}-{config.name}"}
                run_wrk(route.script, urls[config.name, route.script], 2, args.connections, env)
        for number in range(args.runs):
            for route in routes:
                # Both configurations back to back, in turn first: drift falls on both alike.
                pair = configs if number % 2 == 0 else configs[::-1]
                for config in pair:
                    if (config.name, route.script) not in urls:
                        continue
                    drain_embeddings(bases)
                    env = dict(envs[config.name, route.script])
                    if route.script == "activate":
                        env["BENCH_RUN"] = f"act-{run_id}-{config.name}-{number}"
                    url = urls[config.name, route.script]
                    outcome = run_wrk(route.script, url, args.duration, args.connections, env)
                    measured.results[config.name][route.script].runs.append(outcome)
                    lines = ""
                    if outcome.access_lines is not None:
                        lines = f", access lines/request {outcome.lines_per_request:.3f}"
                    print(
                        f"run {number + 1}/{args.runs} {config.name} {route.script}: "
                        f"{outcome.requests_per_second:,.0f} req/s, p50 {outcome.p50_ms:.2f} ms, "
                        f"p99 {outcome.p99_ms:.2f} ms, server CPU {outcome.server_cpu_us:,.0f} µs/request, "
                        f"errors {outcome.non_2xx + outcome.socket_errors}{lines}",
                        flush=True,
                    )
        if args.quick or args.skip_latency:
            return
        headline = configs[0].name
        if "session_current" in measured.results.get(headline, {}):
            route = measured.results[headline]["session_current"].route
            measured.many, paced = measure_many_connections(
                route, urls[headline, "session_current"], envs[headline, "session_current"], args
            )
            measured.paced.append(paced)
        if "remember" in measured.results.get(headline, {}):
            measured.paced.append(
                measure_paced(
                    measured.results[headline]["remember"],
                    PACED_CONNECTIONS["remember"],
                    urls[headline, "remember"],
                    envs[headline, "remember"],
                    args,
                )
            )


def main(argv: list[str] | None = None) -> None:
    from bench import report

    args = parse_args(argv)
    configs, routes = check_args(args)
    # SIGTERM (and SIGINT, which a background job ignores) end the run through the `finally`
    # clauses below: servers stopped, databases dropped, Redis keys removed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    run_id = secrets.token_hex(4)
    db_names = [f"memanto_bench_load_{run_id}_{config.name}" for config in configs]

    async def setup() -> str:
        key = ""
        for name in db_names:  # the same key in every database: one owner id, one key
            conn = await asyncpg.connect(await fresh_database(name))
            try:
                if not key:
                    owner_id, key = await create_key(conn)
                else:
                    await copy_key(conn, owner_id, key)
            finally:
                await conn.close()
        return key

    key = asyncio.run(setup())
    measured = Measured(results={}, configs=configs)
    log_dir = Path(tempfile.mkdtemp(prefix="memanto-bench-logs-"))
    try:
        measure_routes(args, configs, routes, key, run_id, log_dir, measured)
    finally:
        for name in db_names:
            asyncio.run(drop_database(name))
        clear_redis(f"memanto-bench-{run_id}-*")
        clear_redis(f"memanto-bench-baseline-{run_id}*")
        shutil.rmtree(log_dir, ignore_errors=True)

    if not (args.quick or args.skip_sessions):  # after the wrk runs, on servers and a redis-server of their own
        for config in configs:
            print(
                f"live sessions in Redis (bench.redis_memory), {config.label}: {args.sessions:,} sessions, "
                f"{args.duration} s per run, {args.runs} round(s)",
                flush=True,
            )
            measured.sessions[config.name] = asyncio.run(
                redis_memory.measure(
                    args.sessions,
                    seconds=args.duration,
                    rounds=args.runs,
                    use_wrk=True,
                    config=config,
                    echo=lambda line: print(line, flush=True),
                )
            )

    if not (args.quick or args.skip_backends):
        measured.redis_results = run_redis_benchmark()
        measured.pg_result = run_pgbench(args.pgbench_duration)
    machine_info = report.machine()
    machine_info["load average (1 min) before / after the run"] = f"{load_before[0]:.2f} / {os.getloadavg()[0]:.2f}"
    section = report.render(args, measured, machine_info, report.versions(), started)
    report.write_report(args.output, section)
    print(f"wrote {args.output}")


async def copy_key(conn: asyncpg.Connection, owner_id: str, key: str) -> None:
    """The owner and API key of the first database, in another (the servers share one key)."""
    from memanto_server.auth.keys import display_prefix, hash_api_key, new_key_id

    await conn.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'bench')", owner_id)
    await conn.execute(
        "INSERT INTO api_keys (key_id, owner_id, name, key_hash, prefix) VALUES ($1, $2, 'bench', $3, $4)",
        new_key_id(),
        owner_id,
        hash_api_key(key),
        display_prefix(key),
    )


if __name__ == "__main__":
    main()
