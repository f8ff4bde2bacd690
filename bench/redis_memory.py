"""Redis memory per live session, and throughput with 100,000 live sessions against 10.

    python -m bench.redis_memory [--sessions 100000] [--seconds 10] [--rounds 2] [--connections 16]
                                 [--redis-url redis://...] [--no-wrk] [--skip-throughput]

Memory: creates `--sessions` live sessions directly through the store's own activate
script (app.sessions.store.SessionStore, a key prefix of its own, owner ids UUIDs, agent
ids as agents are named), and reads `INFO memory` `used_memory` before and after:
bytes per live session, its one key (the `sess:` hash) and its TTL included.

Throughput: one server worker (pinned to core 0, `wrk` to core 1 when there are two)
against the same Redis, `GET /session/current` and `activate` for `--seconds` each over
10 agents: with only those 10 live sessions, then with `--sessions` more present, and
back, `--rounds` times (alternating, so that drift shows and evens out); the medians are
compared. Uses `wrk` if installed, else an asyncio httpx loop.

By default Redis is a private `redis-server` of this run's own (no other client's keys
or commands in the figures); all keys it created are deleted at the end either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from app.sessions.service import new_session_id
from app.sessions.store import SessionStore
from bench.commandstats import private_redis_server
from bench.common import create_key, drop_database, fresh_database, server

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10, help="per throughput run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="runs with many sessions, each between runs with 10")
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio httpx loop even if wrk is installed")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk

    with redis_for_run(args.redis_url) as redis_url:
        before, after, fill_s, sample = await memory_per_session(redis_url, args.sessions)
        per_session = (after - before) / args.sessions
        print(f"Redis {redis_url}")
        print(
            f"memory: {args.sessions:,} live sessions created in {fill_s:.1f} s; used_memory {before:,} -> {after:,} B"
        )
        verdict = "meets" if per_session <= TARGET_BYTES else "misses"
        print(f"  {per_session:.0f} bytes per live session ({verdict} the target of <= {TARGET_BYTES})")
        for name, usage in sample.items():
            print(f"  MEMORY USAGE {name}: {usage} B")
        if args.skip_throughput:
            return

        url = await fresh_database(DB_NAME)
        redis = Redis.from_url(redis_url, decode_responses=True)
        prefix = bench_prefix()
        try:
            conn = await asyncpg.connect(url)
            try:
                _, key = await create_key(conn)
            finally:
                await conn.close()
            with server(url, extra_env={"MEMANTO_REDIS_URL": redis_url}) as base:
                pin_server(0)
                tool = "wrk" if use_wrk else "httpx"
                print(f"throughput ({tool}, {args.connections} connections, {args.seconds} s per run, req/s):")
                runs: dict[str, list[dict[str, float]]] = {"small": [], "big": []}
                store = SessionStore(redis, prefix, retain_ms=600_000)
                runs["small"].append(await throughput(base, key, args.seconds, args.connections, use_wrk))
                for _ in range(args.rounds):  # alternate, so that drift shows and evens out
                    await fill(store, args.sessions)
                    runs["big"].append(await throughput(base, key, args.seconds, args.connections, use_wrk))
                    await delete_prefix(redis, prefix)
                    runs["small"].append(await throughput(base, key, args.seconds, args.connections, use_wrk))
            print(f"  {'live sessions':<16} {'route':<22} {'runs (in order)':<36} {'median':>8}")
            medians: dict[tuple[str, str], float] = {}
            for label, name in (("small", "10"), ("big", f"{args.sessions:,} + 10")):
                for route in ("current", "activate"):
                    values = [run[route] for run in runs[label]]
                    medians[label, route] = statistics.median(values)
                    shown = " ".join(f"{v:.0f}" for v in values)
                    print(f"  {name:<16} {ROUTES[route]:<22} {shown:<36} {medians[label, route]:>8.0f}")
            for route in ("current", "activate"):
                ratio = medians["big", route] / medians["small", route]
                verdict = "meets" if ratio >= 0.9 else "misses"
                print(f"  {ROUTES[route]}: {args.sessions:,} / 10 = {ratio:.2f} ({verdict} the target of >= 0.90)")
        finally:
            await delete_prefix(redis, prefix)
            await redis.aclose()
            await drop_database(DB_NAME)


if __name__ == "__main__":
    asyncio.run(main())
