"""Real processes of the test's own: `memanto-server serve`, private Redis servers, the admin CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from memanto_server.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The MEMANTO_* environment that reproduces `settings` in a server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMANTO_")}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"MEMANTO_{name.upper()}"] = str(value)
    return env


def revoke_with_cli(env: dict[str, str], key_id: str) -> float:
    """`memanto-server keys revoke KEY_ID` as an operator runs it; returns when it exited (monotonic)."""
    revoke = subprocess.run(
        [sys.executable, "-m", "memanto_server.cli.server", "keys", "revoke", key_id],
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
        options: list[str] | None = None,
    ) -> None:
        self.env = env
        self.options = options or []
        self.workers = workers
        self.log_path = log_path
        self.port = port or free_port()
        self.graceful_timeout = graceful_timeout
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        assert self.process is None, "already started"
        command = [sys.executable, "-m", "memanto_server.cli.server", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        if self.graceful_timeout is not None:
            command += ["--graceful-timeout", str(self.graceful_timeout)]
        command += self.options
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )

    def wait_ready(self, timeout: float = 90) -> None:
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


@contextlib.contextmanager
def running_servers(env: dict[str, str], count: int) -> Iterator[list[str]]:
    """`count` server processes on one environment, started side by side (each start is mostly
    imports: waiting for one before starting the next only adds up their start-up times)."""
    servers = [ServerProcess(env) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield [server.base_url for server in servers]
    finally:
        running = [server for server in servers if server.process is not None]
        for server in running:  # all told at once, so that they stop side by side too
            if server.process is not None and server.process.poll() is None:
                server.terminate()
        for server in running:
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed, as `stop()` does
                server.wait()
