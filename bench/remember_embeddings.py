"""What embeddings cost `remember`: the worker in the app process, in a process of its own, or none.

    python -m bench.remember_embeddings [--duration 6] [--runs 3] [--connections 32]

Three `memanto-server serve` processes in the production configuration (bench.run's), one
uvicorn worker each, on databases of their own, pinned to the server core as bench.run pins
them and driven by the same `wrk` script (`bench/wrk/remember.lua`) from the other core:

- **in the app process**: `MEMANTO_EMBEDDING_WORKER=true` (the setting's default, as `make run`
  runs it): the app's own worker embeds what `remember` stores while the route is measured, at
  a lower priority than the event loop;
- **apart**: `MEMANTO_EMBEDDING_WORKER=false`, as compose.yaml runs the replicas, with
  `memanto-server worker` in a container of its own (on another core or host); here the worker
  process runs between the measurements, to embed what the previous one stored, not during them;
- **embeddings off**: `MEMANTO_EMBEDDER=none` (no semantic recall): the reference.

Before each measurement every backlog is drained, so each starts from none. Runs alternate
the order. Prints requests/s and server CPU per request, each configuration against
embeddings off (the target of issue 13: apart ≥ 0.9x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench import run as bench_run
from bench.common import PRODUCTION, Config, create_key, database_url, drop_database, fresh_database

IN_PROCESS = Config("in-process", "worker in the app process", {**PRODUCTION.env, "MEMANTO_EMBEDDING_WORKER": "true"})
APART = Config("apart", "worker in its own process (compose.yaml; bench.run's production)", dict(PRODUCTION.env))
EMBEDDINGS_OFF = Config("off", "embeddings off", {**PRODUCTION.env, "MEMANTO_EMBEDDER": "none"})
CONFIGS = (IN_PROCESS, APART, EMBEDDINGS_OFF)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per measurement (default 6)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if missing := [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]:
        sys.exit(f"bench.remember_embeddings: missing tools: {', '.join(missing)}")
    signal.signal(signal.SIGTERM, bench_run._exit_on_signal)
    run_id = secrets.token_hex(4)
    names = {config.name: f"memanto_bench_embed_{run_id}_{config.name.replace('-', '_')}" for config in CONFIGS}

    async def setup() -> str:
        key = owner_id = ""
        for name in names.values():
            conn = await asyncpg.connect(await fresh_database(name))
            try:
                if not key:
                    owner_id, key = await create_key(conn)
                else:
                    await bench_run.copy_key(conn, owner_id, key)
            finally:
                await conn.close()
        return key

    key = asyncio.run(setup())
    results: dict[str, list[bench_run.WrkResult]] = {config.name: [] for config in CONFIGS}
    log_dir = Path(tempfile.mkdtemp(prefix="memanto-bench-embed-"))
    try:
        with contextlib.ExitStack() as stack:
            bases, envs = {}, {}
            for config in CONFIGS:
                db_url = database_url(names[config.name])
                prefix = f"memanto-bench-{run_id}-{config.name}:"
                bases[config.name] = stack.enter_context(
                    bench_run.memanto(db_url, prefix, config=config, log_dir=log_dir)
                )
                envs[config.name] = bench_run.prepare_memanto(
                    bases[config.name], key, run_id, recall=False, extend=False
                )["remember"]
            for config in CONFIGS:  # warm-up
                bench_run.run_wrk("remember", bases[config.name], 2, args.connections, envs[config.name])
            for number in range(args.runs):
                for config in CONFIGS if number % 2 == 0 else CONFIGS[::-1]:
                    bench_run.drain_embeddings(list(bases.values()))
                    outcome = bench_run.run_wrk(
                        "remember", bases[config.name], args.duration, args.connections, envs[config.name]
                    )
                    results[config.name].append(outcome)
                    print(
                        f"run {number + 1}/{args.runs} {config.name}: {outcome.requests_per_second:,.0f} req/s, "
                        f"server CPU {outcome.server_cpu_us:,.0f} µs/request, "
                        f"errors {outcome.non_2xx + outcome.socket_errors}",
                        flush=True,
                    )
    finally:
        for name in names.values():
            asyncio.run(drop_database(name))
        bench_run.clear_redis(f"memanto-bench-{run_id}-*")
        shutil.rmtree(log_dir, ignore_errors=True)

    reference = statistics.median(r.requests_per_second for r in results[EMBEDDINGS_OFF.name])
    print()
    print(f"`python -m bench.remember_embeddings {' '.join(argv if argv is not None else sys.argv[1:])}`".strip())
    print()
    print("| `remember`, production configuration | requests/s | x embeddings off | server CPU µs/request | runs |")
    print("| --- | ---: | ---: | ---: | --- |")
    for config in CONFIGS:
        runs = results[config.name]
        rps = statistics.median(r.requests_per_second for r in runs)
        cpu = statistics.median(r.server_cpu_us for r in runs)
        each = ", ".join(f"{r.requests_per_second:,.0f}" for r in runs)
        print(f"| {config.label} | {rps:,.0f} | {rps / reference:.2f}x | {cpu:,.0f} | {each} |")


if __name__ == "__main__":
    main()
