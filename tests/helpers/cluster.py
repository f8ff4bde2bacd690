"""A real Redis Cluster of the test's own (three masters on loopback ports)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.processes import RedisProcess, free_port


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
