"""Small helpers shared by the tests: headers, activation, and real server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

API = "/api/v2"


def parse_z(value: str) -> datetime:
    """An ISO-8601 UTC time with the contract's `Z` suffix."""
    assert isinstance(value, str), value
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.removesuffix("Z") + "+00:00")


def token_headers(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"X-Session-Token": token}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


async def activate(client: Any, key: str, agent_id: str, **params: Any) -> dict[str, Any]:
    response = await client.post(
        f"{API}/agents/{agent_id}/activate", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def assert_concurrent_extends_add_up(base_url: str, key: str, agent_id: str) -> None:
    """Ten concurrent one-hour extends of a new one-hour session, however many instances or
    Redis nodes serve them: none is lost, and each saw a different previous expiry."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        session = await activate(client, key, agent_id, duration_hours=1)
        headers = token_headers(session["session_token"])
        responses = await asyncio.gather(
            *(client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers) for _ in range(10))
        )
        assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
        current = await client.get(f"{API}/session/current", headers=headers)
    assert current.status_code == 200, current.text
    created = parse_z(session["created_at"])
    assert parse_z(current.json()["expires_at"]) - created == timedelta(hours=11)
    assert current.json()["extensions"] == 10
    # 1 h, 2 h, …, 10 h after creation: each extend read the expiry the one before it wrote.
    previous = sorted(parse_z(r.json()["previous_expires_at"]) - created for r in responses)
    assert previous == [timedelta(hours=h) for h in range(1, 11)]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body  # type: ignore[no-any-return]


def assert_unavailable(response: httpx.Response) -> None:
    """A dependency outage: 503 `dependency_unavailable` with a usable `Retry-After`."""
    assert_problem(response, 503, "dependency_unavailable")
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None, response.headers
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) > 0


def revoke_with_cli(env: dict[str, str], key_id: str) -> float:
    """`memanto-server keys revoke KEY_ID` as an operator runs it; returns when it exited (monotonic)."""
    revoke = subprocess.run(
        [sys.executable, "-m", "app.cli.server", "keys", "revoke", key_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    exited = time.monotonic()
    assert revoke.returncode == 0, revoke.stderr
    assert f"revoked {key_id}" in revoke.stdout
    return exited


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A private `redis-server` on a loopback port, which a test may stop and start again.

    Without `aof_dir` it keeps nothing on disk: a restart starts empty, as a lost Redis
    would. With `aof_dir` the append-only file is on (`appendfsync always`) in that folder,
    so a restart, even after `kill()`, replays every acknowledged write.
    """

    def __init__(self, port: int, *, aof_dir: Path | None = None) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.aof_dir = aof_dir
        self._process: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        command = ["redis-server", "--port", str(self.port), "--save", "", "--bind", "127.0.0.1"]
        if self.aof_dir is None:
            return [*command, "--appendonly", "no"]
        return [*command, "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.aof_dir)]

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 10) -> None:
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"redis-server on port {self.port} exited with {code}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop as a crash would (SIGKILL): no shutdown, no last write to disk."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, but nothing is answered."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def private_redis(port: int | None = None, *, aof_dir: Path | None = None) -> Iterator[RedisProcess]:
    """A `redis-server` of the caller's own, always stopped on the way out.

    No persistence unless `aof_dir` names a folder for its append-only file.
    """
    server = RedisProcess(port or free_port(), aof_dir=aof_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class ServerProcess:
    """`memanto-server serve` in a process of its own on a free loopback port.

    `start()` returns at once (so several can start side by side); `wait_ready()` waits
    for `/health/live`; `stop()` sends SIGTERM, as a container runtime would.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        log_path: Path | None = None,
        port: int | None = None,
        graceful_timeout: int | None = None,
    ) -> None:
        self.env = env
        self.workers = workers
        self.log_path = log_path
        self.port = port or free_port()
        self.graceful_timeout = graceful_timeout
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        assert self.process is None, "already started"
        command = [sys.executable, "-m", "app.cli.server", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        if self.graceful_timeout is not None:
            command += ["--graceful-timeout", str(self.graceful_timeout)]
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start in {timeout:g} s")
            time.sleep(0.1)

    def terminate(self) -> None:
        """SIGTERM: uvicorn stops accepting and finishes what is in flight."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15) -> int:
        """The exit status (killed, and a failure raised, when it takes longer than `timeout`)."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._close_log()

    def stop(self, timeout: float = 15) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self.log_path and self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running_server(
    env: dict[str, str], *, workers: int = 1, log_path: Path | None = None, port: int | None = None
) -> Iterator[str]:
    """`memanto-server serve` in a process of its own on a free loopback port."""
    server = ServerProcess(env, workers=workers, log_path=log_path, port=port)
    try:
        server.start()
        server.wait_ready()
        yield server.base_url
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def agent_row_locked(database_url: str, owner_id: str, agent_id: str) -> AsyncIterator[int]:
    """Hold the agent's row `FOR UPDATE` in a transaction of the test's own, until the block ends.

    Every write that references the agent (a memory's foreign-key check takes `FOR KEY SHARE`
    on its row) waits meanwhile: a request made slow without any test-only code in the app.
    Yields the backend pid that holds the lock (see `wait_until_blocked`).
    """
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            locked = await conn.fetchval(
                "SELECT agent_id FROM agents WHERE owner_id = $1::uuid AND agent_id = $2 FOR UPDATE", owner_id, agent_id
            )
            assert locked == agent_id, f"no agent {agent_id} to lock"
            yield await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await conn.close()


async def wait_until_blocked(conn: asyncpg.Connection[Any], holder_pid: int, timeout: float = 10) -> None:
    """Until some other backend waits for a lock that `holder_pid` holds."""
    deadline = time.monotonic() + timeout
    while not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid)))", holder_pid
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"no statement waited for the lock within {timeout:g} s")
        await asyncio.sleep(0.02)


class RedisClusterProcesses:
    """A real Redis Cluster of `masters` `redis-server` processes (no replicas, no persistence)."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(masters)]
        # Each node's cluster bus gets a free port of its own (the default, port + 10000,
        # may be taken or past 65535).
        self.bus_ports = [free_port() for _ in range(masters)]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)
        self._processes: list[subprocess.Popen[bytes]] = []

    def _cli(self, port: int, *args: str, timeout: float = 10) -> str:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {result.stdout} {result.stderr}")
        return result.stdout

    def start(self, timeout: float = 20) -> None:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            self._processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(bus_port),
                        "--cluster-config-file",
                        str(self.directory / f"nodes-{port}.conf"),
                        "--dir",
                        str(self.directory),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout
        for port, process in zip(self.ports, self._processes, strict=True):
            while not RedisProcess(port).ping():
                if process.poll() is not None:
                    raise RuntimeError(f"cluster node on port {port} exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not answer PING in {timeout} s")
                time.sleep(0.05)
        self._cli(
            self.ports[0],
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            timeout=timeout,
        )
        # Every node must agree that all slots are served before a client may rely on it.
        for port in self.ports:
            while "cluster_state:ok" not in self._cli(port, "cluster", "info"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster did not reach cluster_state:ok in {timeout} s")
                time.sleep(0.05)

    def stop(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def private_redis_cluster(masters: int = 3) -> Iterator[RedisClusterProcesses]:
    """A 3-master Redis Cluster on free loopback ports; stopped and its files removed on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="memanto-redis-cluster-"))
    cluster = RedisClusterProcesses(directory, masters)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
