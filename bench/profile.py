"""Where the time of one hot route goes: py-spy samples the server while wrk drives the route.

    python -m bench.profile [--route session_current] [--config production] [--duration 10] [--top 25]
                            [--output DIR]

Starts `memanto-server serve` (one worker, in one of bench.run's configurations: production,
the default, or off; its stderr in a scratch file) under `py-spy record`, pinned to the
server core as in `bench.run`, prepares the route's session and data, drives the route with wrk from the
other core, and prints the functions that take the most samples: *self* (the function's own
code) and *total* (with what it calls). `--output` keeps the collapsed stacks (for
flamegraph tools) and the summary. Needs py-spy (`make install-bench`) and ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench import run as bench_run
from bench.common import CONFIGS, create_key, database_url, drop_database, fresh_database


def summarize(collapsed: Path, top: int) -> str:
    """Self and total sample shares per function, from py-spy's collapsed (`raw`) stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count
    lines = [f"{samples} samples", "", "self %  function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in self_counts.most_common(top)]
    lines += ["", "total % function"]
    lines += [f"{100 * n / samples:6.1f}  {name}" for name, n in total_counts.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", default="session_current", choices=[r.script for r in bench_run.ROUTES])
    parser.add_argument("--config", default="production", choices=list(CONFIGS))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", type=Path, help="directory for the collapsed stacks and the summary")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("bench.profile: py-spy is not installed (make install-bench)")

    run_id = bench_run.secrets.token_hex(4)
    db_name = f"memanto_bench_profile_{run_id}"
    redis_prefix = f"memanto-bench-{run_id}:"
    workdir = Path(tempfile.mkdtemp(prefix="memanto-profile-"))
    collapsed = (args.output or workdir) / f"{args.route}.collapsed"
    collapsed.parent.mkdir(parents=True, exist_ok=True)

    async def setup() -> str:
        url = await fresh_database(db_name)
        conn = await asyncpg.connect(url)
        try:
            return (await create_key(conn))[1]
        finally:
            await conn.close()

    key = asyncio.run(setup())
    try:
        sampler = [
            py_spy,
            "record",
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "--nolineno",
            "--output",
            str(collapsed),
            "--",
        ]
        server = bench_run.memanto(
            database_url(db_name), redis_prefix, wrapper=sampler, config=CONFIGS[args.config], log_dir=workdir
        )
        with server as base:
            envs = bench_run.prepare_memanto(
                base, key, run_id, recall=args.route in ("recall", "recall_text"), extend=args.route == "extend"
            )
            env = {**envs[args.route], "BENCH_RUN": f"profile-{run_id}"}
            bench_run.run_wrk(args.route, base, 2, args.connections, env)  # warm up
            result = bench_run.run_wrk(args.route, base, args.duration, args.connections, env)
            print(f"{args.route}: {result.requests_per_second:,.0f} req/s under the profiler", flush=True)
    finally:
        asyncio.run(drop_database(db_name))
        bench_run.clear_redis(f"{redis_prefix}*")
    summary = summarize(collapsed, args.top)
    print(summary)
    if args.output:
        (args.output / f"{args.route}.txt").write_text(summary + "\n")
    shutil.rmtree(workdir, ignore_errors=True)  # the server's log, and the stacks unless kept in --output


if __name__ == "__main__":
    main()
