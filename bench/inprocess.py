"""The app's own work per request, without a network: what logging and metrics cost, measured
in a way that other processes on the machine do not disturb.

    python -m bench.inprocess [--route health_live] [--config production] [--requests 20000] [--no-metrics]
                              [--worker-apart]
    python -m bench.inprocess --callgrind [--route health_live] [--config production] [--worker-apart]

Creates a database and a Redis prefix of its own, builds the app (`create_app`, the settings of
one of bench.run's configurations) and calls it as uvicorn would, one ASGI call per request,
32 at a time on uvloop, after a warm-up; the app's stderr goes to a scratch file, as a
container's goes to its log driver. Prints the process's CPU time (every thread: the log
writer's too) per request. `--no-metrics` removes the request-metrics observer (not a
configuration users have: it shows what the metrics cost). `--worker-apart` turns the app's own
embedding worker off (`MEMANTO_EMBEDDING_WORKER=false`, as when `memanto-server worker` runs in
a process of its own): what the request path itself costs, without the worker's share of the
process for the memories that `remember` stores.

`--callgrind` runs the measurement twice under `valgrind --tool=callgrind` (640 and 3,200
requests) and prints the difference in instructions per request: the same figure whatever else
the machine is doing, so variants compare to the instruction on a busy machine (a few minutes
per variant; valgrind is a Debian package). HTTP parsing (uvicorn, httptools) and the kernel's
socket work are not in it: they are the same whatever the app does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import CONFIGS, REDIS_URL, create_key, drop_database, fresh_database
from bench.run import clear_redis

ROUTES = ("health_live", "session_current", "remember")
REMEMBER_BODY = (
    b'{"content": "Customer prefers email over phone calls for billing questions",'
    b' "type": "preference", "title": "Contact", "tags": ["contact", "billing"]}'
)
CONCURRENCY = 32
WARM_UP = 300


def request_of(route: str, key: str, token: str, agent: str) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """(method, path, headers, body) of one request of `route`, as bench/wrk/<route>.lua sends it."""
    headers = [(b"host", b"127.0.0.1")]
    if route == "health_live":
        return "GET", "/health/live", headers, b""
    if route == "session_current":
        headers += [(b"authorization", f"Bearer {key}".encode()), (b"x-session-token", token.encode())]
        return "GET", "/api/v2/session/current", headers, b""
    headers += [(b"x-session-token", token.encode()), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(REMEMBER_BODY)).encode()))
    return "POST", f"/api/v2/agents/{agent}/remember", headers, REMEMBER_BODY


class Caller:
    """One ASGI call per request, as a server makes it; counts the statuses."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: dict[int, int] = {}

    async def __call__(self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
        }
        sent = False
        answer = bytearray()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # a client that stays connected
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] = self.statuses.get(message["status"], 0) + 1
            else:
                answer.extend(message.get("body", b""))

        await self.app(scope, receive, send)
        return bytes(answer)


async def measure(
    route: str, requests: int, config: str, no_metrics: bool, worker_apart: bool = False
) -> tuple[float, float, dict[int, int]]:
    """(CPU µs per request, wall µs per request, statuses) of `requests` requests of `route`."""
    import msgspec

    from memanto_server.main import create_app
    from memanto_server.ops.logging import LOG_WRITER
    from memanto_server.settings import Settings

    run_id = secrets.token_hex(4)
    db_name = f"memanto_bench_inprocess_{run_id}"
    prefix = f"memanto-bench-inprocess-{run_id}:"
    db_url = await fresh_database(db_name)
    conn = await asyncpg.connect(db_url)
    try:
        _, key = await create_key(conn)
    finally:
        await conn.close()
    environ = {
        "MEMANTO_DATABASE_URL": db_url,
        "MEMANTO_REDIS_URL": REDIS_URL,
        "MEMANTO_REDIS_PREFIX": prefix,
        "MEMANTO_SECRET_KEY": secrets.token_urlsafe(48),
        **CONFIGS[config].env,
    }
    if worker_apart:
        environ["MEMANTO_EMBEDDING_WORKER"] = "false"
    try:
        app = create_app(Settings.from_env(environ))
        if no_metrics:
            LOG_WRITER.observers.clear()
        call = Caller(app)
        async with app.lifespan():
            agent = "bench-inprocess"
            activated = await call(
                "POST", f"/api/v2/agents/{agent}/activate", [(b"authorization", f"Bearer {key}".encode())], b""
            )
            token = msgspec.json.decode(activated)["session_token"]
            one = request_of(route, key, token, agent)
            for _ in range(WARM_UP):
                await call(*one)
            per_worker = requests // CONCURRENCY

            async def worker() -> None:
                for _ in range(per_worker):
                    await call(*one)

            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            LOG_WRITER.flush()  # the lines and metrics of these requests, counted in
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = per_worker * CONCURRENCY
        return cpu / done * 1e6, wall / done * 1e6, call.statuses
    finally:
        await drop_database(db_name)
        clear_redis(f"{prefix}*")


def run(args: argparse.Namespace) -> None:
    import uvloop

    scratch = tempfile.NamedTemporaryFile(prefix="memanto-inprocess-", suffix=".log", delete=False)  # noqa: SIM115
    saved = os.dup(2)
    os.dup2(scratch.fileno(), 2)  # the app's log, as a container's stderr
    try:
        cpu, wall, statuses = uvloop.run(
            measure(args.route, args.requests, args.config, args.no_metrics, args.worker_apart)
        )
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        scratch.close()
        os.unlink(scratch.name)
    print(
        f"{args.route} ({describe(args)}): {cpu:.1f} µs CPU per request, {wall:.1f} µs wall, statuses {statuses}",
        flush=True,
    )


def describe(args: argparse.Namespace) -> str:
    """The configuration measured, as the output names it."""
    extras = [name for name, on in (("no metrics", args.no_metrics), ("worker apart", args.worker_apart)) if on]
    return ", ".join([args.config, *extras])


def instructions(args: argparse.Namespace, requests: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m"]
    command += ["bench.inprocess", "--route", args.route, "--config", args.config, "--requests", str(requests)]
    if args.no_metrics:
        command.append("--no-metrics")
    if args.worker_apart:
        command.append("--worker-apart")
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if collected is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(collected.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", choices=ROUTES, default="health_live")
    parser.add_argument("--config", choices=list(CONFIGS), default="production")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--no-metrics", action="store_true", help="without the request-metrics observer")
    parser.add_argument("--worker-apart", action="store_true", help="without the app's own embedding worker")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request, under valgrind")
    args = parser.parse_args(argv)
    if not args.callgrind:
        run(args)
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench.inprocess: valgrind is not installed (apt-get install valgrind)")
    small, large = 640, 3_200
    per_request = (instructions(args, large) - instructions(args, small)) / (large - small)
    print(f"{args.route} ({describe(args)}): {per_request:,.0f} instructions per request (callgrind)")


if __name__ == "__main__":
    main()
