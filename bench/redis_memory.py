"""Redis memory per live session, and throughput with 100,000 live sessions against 10.

    python -m bench.redis_memory [--sessions 100000] [--seconds 10] [--rounds 2] [--connections 16]
                                 [--redis-url redis://...] [--no-wrk] [--skip-throughput] [--config production]

Memory: creates `--sessions` live sessions directly through the store's own activate
script (memanto_server.sessions.store.SessionStore, a key prefix of its own, owner ids UUIDs, agent
ids as agents are named), and reads `INFO memory` `used_memory` before and after:
bytes per live session, its one key (the `sess:` hash) and its TTL included.

Throughput: one server worker (pinned to core 0, `wrk` to core 1 when there are two)
against the same Redis, `GET /session/current` and `activate` for `--seconds` each over
10 agents: with only those 10 live sessions, then with `--sessions` more present, and
back, `--rounds` times (alternating, so that drift shows and evens out); the medians are
compared. Uses `wrk` if installed, else an asyncio httpx loop.

By default Redis is a private `redis-server` of this run's own (no other client's keys
or commands in the figures); all keys it created are deleted at the end either way.

`python -m bench.run` runs the same measurement (`measure`, returning a `LiveSessionsResult`)
after its wrk runs and puts `markdown_lines(result)` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from bench.commandstats import private_redis_server
from bench.common import CONFIGS, Config, create_key, drop_database, fresh_database, server
from memanto_server.sessions.service import new_session_id
from memanto_server.sessions.store import SessionStore

DB_NAME = "memanto_bench_redis_memory"
API = "/api/v2"
TARGET_BYTES = 400
AGENT_NAMES = [
    "support-bot",
    "research-assistant",
    "code-reviewer",
    "sales-agent",
    "scheduler",
    "travel-planner",
    "data-analyst",
    "onboarding-guide",
]
HOUR_MS = 3_600_000
ROUTES = {"current": "GET /session/current", "activate": "POST activate"}


def realistic_agent_id(i: int) -> str:
    return f"{AGENT_NAMES[i % len(AGENT_NAMES)]}-{i // len(AGENT_NAMES):04d}"


def bench_prefix() -> str:
    """A prefix of this run's own, as long as the default `memanto:` (key names count in the figure)."""
    return f"m{secrets.token_hex(3)}:"


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def fill(store: SessionStore, count: int, *, agents_per_owner: int = 100, concurrency: int = 64) -> float:
    """`count` live sessions (1 h), `agents_per_owner` agents to an owner; seconds taken."""
    now = int(time.time() * 1000)
    owners = [str(uuid.uuid4()) for _ in range((count + agents_per_owner - 1) // agents_per_owner)]
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await store.activate(
                owners[i // agents_per_owner],
                realistic_agent_id(i % agents_per_owner),
                new_session_id(),
                created_ms=now,
                expires_ms=now + HOUR_MS,
                max_expires_ms=now + 168 * HOUR_MS,
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _one_owner(redis: Redis, prefix: str) -> str:
    async for key in redis.scan_iter(match=f"{prefix}sess:*{realistic_agent_id(0)}}}", count=5000):
        return str(key).split("{", 1)[1].split(":", 1)[0]
    raise RuntimeError("no session found")


async def delete_prefix(redis: Redis, prefix: str) -> int:
    deleted = 0
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += await redis.unlink(*batch)
            batch = []
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def memory_per_session(redis_url: str, count: int) -> tuple[int, int, float, dict[str, int]]:
    """(bytes before, bytes after, seconds to fill, MEMORY USAGE of one session's key) for `count`
    sessions; the keys are deleted afterwards."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    prefix = bench_prefix()
    try:
        store = SessionStore(redis, prefix, retain_ms=600_000)
        await store.activate(
            str(uuid.uuid4()), "warm-up", new_session_id(), created_ms=0, expires_ms=1, max_expires_ms=1
        )
        await delete_prefix(redis, prefix)  # scripts loaded, connections open: not counted
        await asyncio.sleep(0.2)
        before = await used_memory(redis)
        seconds = await fill(store, count)
        after = await used_memory(redis)
        key = store.key(owner_id=await _one_owner(redis, prefix), agent_id=realistic_agent_id(0))
        sample = {key: int(await redis.memory_usage(key) or 0)}
        return before, after, seconds, sample
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


# --- throughput -------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                child = int(stat.parent.name)
                children += [child, *_descendants(child)]
    return children


def pin_server(core: int) -> None:
    """Every thread of this process's children (the server and its worker) on `core`."""
    if shutil.which("taskset") is None:
        return
    for pid in _descendants(os.getpid()):
        subprocess.run(["taskset", "-a", "-cp", str(core), str(pid)], capture_output=True, check=False)


WRK_SCRIPT = """
local tokens = {%(tokens)s}
local agents = {%(agents)s}
local i = 0
request = function()
  i = i %% #tokens + 1
  if "%(route)s" == "current" then
    local headers = {["X-Session-Token"] = tokens[i], ["Authorization"] = "%(auth)s"}
    return wrk.format("GET", "%(api)s/session/current", headers)
  end
  return wrk.format("POST", "%(api)s/agents/" .. agents[i] .. "/activate", {["Authorization"] = "%(auth)s"})
end
response = function(status, headers, body)
  if status ~= 200 and status ~= 201 then
    wrk.thread:stop()
  end
end
"""


def _lua_list(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def run_wrk(base: str, route: str, key: str, agents: list[str], tokens: list[str], seconds: int, conns: int) -> float:
    script = WRK_SCRIPT % {
        "tokens": _lua_list(tokens),
        "agents": _lua_list(agents),
        "route": route,
        "api": API,
        "auth": f"Bearer {key}",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        command = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", handle.name, base]
        if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
            command = ["taskset", "-c", "1", *command]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(handle.name)
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not match:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    return float(match.group(1))


async def run_httpx(
    base: str, route: str, key: str, agents: list[str], tokens: list[str], seconds: int, conns: int
) -> float:
    auth = {"Authorization": f"Bearer {key}"}
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < deadline:
            i = (i + 1) % len(tokens)
            if route == "current":
                response = await client.get(f"{API}/session/current", headers={**auth, "X-Session-Token": tokens[i]})
            else:
                response = await client.post(f"{API}/agents/{agents[i]}/activate", headers=auth)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{route}: {response.status_code} {response.text}")
            done += 1

    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client, n) for n in range(conns)))
        return done / (time.monotonic() - started)


async def activate_agents(base: str, key: str, agents: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tokens = []
        for agent in agents:
            response = await client.post(f"{API}/agents/{agent}/activate", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 201, response.text
            tokens.append(response.json()["session_token"])
        return tokens


async def throughput(base: str, key: str, seconds: int, conns: int, use_wrk: bool) -> dict[str, float]:
    agents = [f"throughput-{i}" for i in range(10)]
    results = {}
    for route in ("current", "activate"):
        tokens = await activate_agents(base, key, agents)  # activate supersedes: fresh tokens each time
        if use_wrk:
            run_wrk(base, route, key, agents, tokens, 2, conns)  # warm-up
            results[route] = run_wrk(base, route, key, agents, tokens, seconds, conns)
        else:
            await run_httpx(base, route, key, agents, tokens, 2, conns)
            results[route] = await run_httpx(base, route, key, agents, tokens, seconds, conns)
    return results


@contextlib.contextmanager
def redis_for_run(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with private_redis_server() as private:
            yield private


# --- the result -------------------------------------------------------------------------

DEFAULT_SESSIONS = 100_000
DEFAULT_SECONDS = 10
DEFAULT_ROUNDS = 2
DEFAULT_CONNECTIONS = 16
TARGET_RATIO = 0.9
CONDITIONS = ("small", "big")  # 10 live sessions; `sessions` + 10
MARKDOWN_ROUTES = {"current": "GET /api/v2/session/current", "activate": "POST /api/v2/agents/{agent}/activate"}


@dataclass
class LiveSessionsResult:
    """What one measurement found: memory per live session and, unless skipped, throughput
    with `sessions` + 10 live sessions against 10 (requests/s per run, in the order run)."""

    sessions: int
    redis_url: str
    private_redis: bool  # a redis-server of the measurement's own (else `redis_url` as given)
    redis_version: str
    used_memory_before: int
    used_memory_after: int
    fill_seconds: float
    memory_usage: dict[str, int]  # MEMORY USAGE of one live session's key, by key name
    tool: str | None = None  # "wrk" or "httpx"; None when throughput was not measured
    seconds: int = DEFAULT_SECONDS
    connections: int = DEFAULT_CONNECTIONS
    rounds: int = DEFAULT_ROUNDS
    server_core: int | None = None  # cores given to the server (with Redis, when private) and to wrk
    client_core: int | None = None
    runs: dict[str, list[dict[str, float]]] = field(default_factory=lambda: {c: [] for c in CONDITIONS})
    config: Config | None = None  # the server configuration of the throughput runs (bench.common.CONFIGS)

    @property
    def bytes_per_session(self) -> float:
        return (self.used_memory_after - self.used_memory_before) / self.sessions

    @property
    def memory_met(self) -> bool:
        return self.bytes_per_session <= TARGET_BYTES

    @property
    def measured_throughput(self) -> bool:
        return self.tool is not None and all(self.runs.get(c) for c in CONDITIONS)

    def values(self, condition: str, route: str) -> list[float]:
        return [run[route] for run in self.runs[condition]]

    @property
    def medians(self) -> dict[tuple[str, str], float]:
        """(condition, route) → median requests/s."""
        return {(c, r): statistics.median(self.values(c, r)) for c in CONDITIONS for r in ROUTES if self.runs[c]}

    @property
    def ratios(self) -> dict[str, float]:
        """route → median with `sessions` + 10 live sessions / median with 10."""
        medians = self.medians
        return {route: medians["big", route] / medians["small", route] for route in ROUTES}

    def ratio_met(self, route: str) -> bool:
        return self.ratios[route] >= TARGET_RATIO

    def condition_label(self, condition: str) -> str:
        return "10" if condition == "small" else f"{self.sessions:,} + 10"

    def command(self) -> list[str]:
        """The command line that repeats this measurement on its own."""
        command = ["python", "-m", "bench.redis_memory", "--sessions", str(self.sessions)]
        if not self.private_redis:
            command += ["--redis-url", self.redis_url]
        if self.tool is None:
            return [*command, "--skip-throughput"]
        command += ["--seconds", str(self.seconds), "--rounds", str(self.rounds)]
        command += ["--connections", str(self.connections)]
        if self.config is not None:
            command += ["--config", self.config.name]
        return [*command, "--no-wrk"] if self.tool == "httpx" else command


# --- measuring --------------------------------------------------------------------------


def memory_lines(result: LiveSessionsResult) -> list[str]:
    verdict = "meets" if result.memory_met else "misses"
    return [
        f"Redis {result.redis_url}",
        f"memory: {result.sessions:,} live sessions created in {result.fill_seconds:.1f} s; "
        f"used_memory {result.used_memory_before:,} -> {result.used_memory_after:,} B",
        f"  {result.bytes_per_session:.0f} bytes per live session ({verdict} the target of <= {TARGET_BYTES})",
        *(f"  MEMORY USAGE {name}: {usage} B" for name, usage in result.memory_usage.items()),
    ]


def throughput_header(result: LiveSessionsResult) -> str:
    return f"throughput ({result.tool}, {result.connections} connections, {result.seconds} s per run, req/s):"


def throughput_lines(result: LiveSessionsResult) -> list[str]:
    lines = [f"  {'live sessions':<16} {'route':<22} {'runs (in order)':<36} {'median':>8}"]
    medians = result.medians
    for condition in CONDITIONS:
        name = result.condition_label(condition)
        for route in ROUTES:
            shown = " ".join(f"{v:.0f}" for v in result.values(condition, route))
            lines.append(f"  {name:<16} {ROUTES[route]:<22} {shown:<36} {medians[condition, route]:>8.0f}")
    for route, ratio in result.ratios.items():
        verdict = "meets" if result.ratio_met(route) else "misses"
        lines.append(f"  {ROUTES[route]}: {result.sessions:,} / 10 = {ratio:.2f} ({verdict} the target of >= 0.90)")
    return lines


def text_lines(result: LiveSessionsResult) -> list[str]:
    """What the command line prints."""
    if not result.measured_throughput:
        return memory_lines(result)
    return [*memory_lines(result), throughput_header(result), *throughput_lines(result)]


async def measure(
    sessions: int = DEFAULT_SESSIONS,
    *,
    seconds: int = DEFAULT_SECONDS,
    rounds: int = DEFAULT_ROUNDS,
    connections: int = DEFAULT_CONNECTIONS,
    redis_url: str | None = None,
    use_wrk: bool | None = None,
    skip_throughput: bool = False,
    config: Config | None = None,
    echo: Callable[[str], None] | None = None,
) -> LiveSessionsResult:
    """Memory per live session and (unless `skip_throughput`) throughput with `sessions` + 10
    live sessions against 10. Redis is a private `redis-server` unless `redis_url` is given;
    `use_wrk` defaults to whether wrk is installed. `echo` gets the lines of `text_lines` as
    they become known (the memory figures first, then the throughput table at the end).
    `config` adds its MEMANTO_* settings to the server's (the default: logging off)."""
    say = echo or (lambda _line: None)
    if use_wrk is None:
        use_wrk = shutil.which("wrk") is not None
    pinned = shutil.which("taskset") is not None

    with redis_for_run(redis_url) as url:
        before, after, fill_s, sample = await memory_per_session(url, sessions)
        info = Redis.from_url(url, decode_responses=True)
        try:
            version = str((await info.info("server")).get("redis_version", "?"))
        finally:
            await info.aclose()
        result = LiveSessionsResult(
            sessions=sessions,
            redis_url=url,
            private_redis=redis_url is None,
            redis_version=version,
            used_memory_before=before,
            used_memory_after=after,
            fill_seconds=fill_s,
            memory_usage=sample,
            config=config,
        )
        for line in memory_lines(result):
            say(line)
        if skip_throughput:
            return result

        result.tool = "wrk" if use_wrk else "httpx"
        result.seconds, result.connections, result.rounds = seconds, connections, rounds
        result.server_core = 0 if pinned else None
        result.client_core = 1 if use_wrk and pinned and (os.cpu_count() or 1) > 1 else None
        db_url = await fresh_database(DB_NAME)
        redis = Redis.from_url(url, decode_responses=True)
        prefix = bench_prefix()
        try:
            conn = await asyncpg.connect(db_url)
            try:
                _, key = await create_key(conn)
            finally:
                await conn.close()
            extra_env = {**(config.env if config else {}), "MEMANTO_REDIS_URL": url}
            with (
                tempfile.TemporaryDirectory(prefix="memanto-bench-logs-") as log_dir,  # its stderr, as a container's
                server(db_url, extra_env=extra_env, log_path=Path(log_dir) / "server.log") as base,
            ):
                pin_server(0)
                say(throughput_header(result))
                store = SessionStore(redis, prefix, retain_ms=600_000)
                runs = result.runs
                runs["small"].append(await throughput(base, key, seconds, connections, use_wrk))
                for _ in range(rounds):  # alternate, so that drift shows and evens out
                    await fill(store, sessions)
                    runs["big"].append(await throughput(base, key, seconds, connections, use_wrk))
                    await delete_prefix(redis, prefix)
                    runs["small"].append(await throughput(base, key, seconds, connections, use_wrk))
            for line in throughput_lines(result):
                say(line)
        finally:
            await delete_prefix(redis, prefix)
            await redis.aclose()
            await drop_database(DB_NAME)
    return result


# --- the report's section ---------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown_lines(result: LiveSessionsResult) -> list[str]:
    """The "Live sessions in Redis" section of docs/benchmarks.md (ends with an empty line)."""
    if result.private_redis:
        where = (
            f"a private `redis-server` {result.redis_version} started for it (no persistence; no other "
            "client's keys or commands in the figures)"
        )
    else:
        where = f"Redis {result.redis_version} at `{result.redis_url}`"
    lines = [
        "## Live sessions in Redis",
        "",
        f"Measured with `bench/redis_memory.py` against {where}. {result.sessions:,} live sessions are created "
        "directly through the session store's activate script (1 h TTL, 100 agents to an owner, owner ids UUIDs, "
        "agent ids as agents are named, a key prefix as long as the default `memanto:`), and `INFO memory` "
        "`used_memory` is read before and after; every key created is deleted at the end.",
        "",
        f"- Redis memory per live session: **{result.bytes_per_session:,.0f} B** (`used_memory` "
        f"{result.used_memory_before:,} → {result.used_memory_after:,} B for {result.sessions:,} sessions, "
        f"created in {result.fill_seconds:.1f} s) — target ≤ {TARGET_BYTES} B: {_met(result.memory_met)}",
        *(
            f"- `MEMORY USAGE` of one live session's key (its only key, the `sess:` hash, TTL included): "
            f"{usage:,} B (`{name}`)"
            for name, usage in result.memory_usage.items()
        ),
        "",
    ]
    return [*lines, *throughput_markdown_lines(result)]


def throughput_markdown_lines(result: LiveSessionsResult) -> list[str]:
    """The throughput part of the section: its table, in `result`'s server configuration."""
    if not result.measured_throughput:
        return ["Throughput with many live sessions: not measured in this run.", ""]
    pinning = (
        f"the server (one worker{', and the private redis-server' if result.private_redis else ''}) pinned to "
        f"core {result.server_core} with `taskset`"
        if result.server_core is not None
        else "nothing pinned (no `taskset`)"
    )
    client = f"`{result.tool}` pinned to core {result.client_core}" if result.client_core is not None else result.tool
    small, big = (result.condition_label(c) for c in CONDITIONS)
    configuration = f", {result.config.label} configuration" if result.config else ""
    lines = [
        f"Throughput with {big} live sessions against 10{configuration}: {result.tool}, "
        f"{result.connections} connections, {result.seconds} s per run after a 2 s warm-up, over 10 agents "
        "activated afresh before each route; "
        f"{pinning}, {client}. The runs alternate, {result.rounds} run(s) with {big} each between runs with "
        f"{small} ({small} first and last), so that drift shows and evens out; the ratio compares the medians.",
        "",
        f"| route | req/s with {small} live sessions (runs in order) | median | req/s with {big} (runs in order) "
        f"| median | ratio {big} / {small} | target ≥ {TARGET_RATIO:.2f} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    medians = result.medians
    for route, ratio in result.ratios.items():
        cells = []
        for condition in CONDITIONS:
            cells.append(", ".join(f"{v:,.0f}" for v in result.values(condition, route)))
            cells.append(f"{medians[condition, route]:,.0f}")
        lines.append(
            f"| `{MARKDOWN_ROUTES[route]}` | {' | '.join(cells)} | {ratio:.2f} | {_met(result.ratio_met(route))} |"
        )
    return [*lines, "", "Repeat it on its own with:", "", "```sh", shlex.join(result.command()), "```", ""]


def target_lines(result: LiveSessionsResult) -> list[str]:
    """Lines for the report's "Against the targets of issue 6" list."""
    lines = [
        f"- Redis memory per live session ≤ {TARGET_BYTES} B ({result.sessions:,} live sessions): "
        f"{result.bytes_per_session:,.0f} B — {_met(result.memory_met)}"
    ]
    return [*lines, *throughput_target_lines(result)]


def throughput_target_lines(result: LiveSessionsResult) -> list[str]:
    """The throughput target's line alone (one per server configuration in bench.run's report)."""
    if not result.measured_throughput:
        return []
    ratios = result.ratios
    shown = ", ".join(f"`{ROUTES[route]}` {ratio:.2f}x" for route, ratio in ratios.items())
    met = all(result.ratio_met(route) for route in ratios)
    configuration = f" ({result.config.label})" if result.config else ""
    return [
        f"- `GET /session/current` and `activate` with {result.sessions:,} + 10 live sessions "
        f"≥ {TARGET_RATIO:.2f}x with 10{configuration}: {shown} — {_met(met)}"
    ]


# --- command line -----------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS)
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="per throughput run")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="runs with many sessions, each between runs with 10"
    )
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio httpx loop even if wrk is installed")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--config", choices=list(CONFIGS), default=None, help="the server's configuration (default: logging off)"
    )
    args = parser.parse_args()
    await measure(
        args.sessions,
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        redis_url=args.redis_url,
        use_wrk=shutil.which("wrk") is not None and not args.no_wrk,
        skip_throughput=args.skip_throughput,
        config=CONFIGS[args.config] if args.config else None,
        echo=print,
    )


if __name__ == "__main__":
    asyncio.run(main())
