"""The framework's own answer to sessions: Litestar server-side sessions on a Redis store.

    python -m bench.baseline_app --port 8001 [--redis-url redis://127.0.0.1:6379/0] [--namespace NS]

`POST /login` writes a session and sets its cookie (the runner calls it once); `GET /session`
reads that session and answers with it, one session read per request. Served by uvicorn with
the same options as `memanto-server serve` (uvloop, httptools, one worker, no access log).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn
from litestar import Litestar, Request, get, post
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

REDIS_URL = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("BASELINE_NAMESPACE", "memanto-bench-baseline")


@post("/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> dict[str, str]:
    request.set_session({"agent_id": "baseline-agent", "owner_id": "baseline-owner", "memories_stored": 0})
    return {"status": "ok"}


@get("/session")
async def current(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return dict(request.session)


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    redis = Redis.from_url(REDIS_URL, max_connections=100)
    store = RedisStore(redis, namespace=NAMESPACE, handle_client_shutdown=True)
    return Litestar(
        route_handlers=[login, current, live],
        middleware=[ServerSideSessionConfig().middleware],
        stores={"sessions": store},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        "bench.baseline_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
