"""The published `memanto` package (its CLI and SDK) in a venv of its own, run against this server.

The venv is made once per pin and kept in a cache folder keyed by it, so a run installs nothing
when it is there. Every run of the package gets its own HOME (it keeps `~/.memanto`), its own
working folder (it reads `.env` there), an environment holding nothing of ours, and a network
that is only loopback: `sitecustomize` refuses and records any other connection or name lookup,
and proxy-honouring clients are sent to a local listener that records what they ask for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

MEMANTO_PIN = "0.2.30"
MOORCHEH_SDK_PIN = "1.3.7"
INSTALL_TIMEOUT = 240

# Why an install failed because the registry could not be reached (the suite then skips).
UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Could not fetch URL",
    "No matching distribution found",
    "Connection refused",
    "timed out",
)

SITECUSTOMIZE = '''
"""Loopback only: any other connection or name lookup is refused and recorded."""
import os
import socket

_LOG = os.environ["MEMANTO_TEST_NET_LOG"]
_LOOPBACK = ("127.", "::1", "localhost")


def _record(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")


def _outside(host):
    return host is not None and not str(host).startswith(_LOOPBACK) and str(host) not in ("", "0.0.0.0")


_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if _outside(host.decode() if isinstance(host, bytes) else host):
        _record(f"lookup {host}")
        raise socket.gaierror(socket.EAI_NONAME, f"the test allows loopback only, not {host}")
    return _getaddrinfo(host, *args, **kwargs)


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and _outside(address[0]):
        _record(f"connect {address[0]}")
        raise ConnectionRefusedError(f"the test allows loopback only, not {address[0]}")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
'''


def cache_root() -> Path:
    configured = os.environ.get("MEMANTO_TEST_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "memanto-server-tests"


class InstallUnavailable(Exception):
    """PyPI could not be reached to install the pinned package."""


def memanto_venv() -> Path:
    """The venv of the pinned package, installed on first use (under a lock: one install at a time)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"memanto-{MEMANTO_PIN}-moorcheh-sdk-{MOORCHEH_SDK_PIN}-py{sys.version_info[0]}{sys.version_info[1]}"
    done = venv / ".installed"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        install = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"memanto=={MEMANTO_PIN}",
                f"moorcheh-sdk=={MOORCHEH_SDK_PIN}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if install.returncode != 0:
            if any(sign in install.stderr for sign in UNREACHABLE):
                raise InstallUnavailable(install.stderr.strip().splitlines()[-1])
            raise RuntimeError(f"pip install memanto=={MEMANTO_PIN} failed:\n{install.stderr}")
        done.write_text(MEMANTO_PIN)
    return venv


class ProxyRecorder:
    """A local TCP listener that records the first line each client sends (`CONNECT host:443 …`) and hangs up."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self.requests.append(conn.recv(1024).split(b"\r\n", 1)[0].decode("latin-1"))

    def close(self) -> None:
        self._server.close()


class MemantoHome:
    """One user of the published package: a HOME, a working folder and the environment its runs get."""

    def __init__(self, venv: Path, home: Path, base_url: str, api_key: str, proxy: ProxyRecorder) -> None:
        self.venv = venv
        self.home = home
        self.net_log = home / "network.log"
        hooks = home / ".hooks"
        hooks.mkdir(parents=True)
        (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        self.env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "PYTHONPATH": str(hooks),
            "MEMANTO_TEST_NET_LOG": str(self.net_log),
            "MOORCHEH_API_KEY": api_key,
            "MOORCHEH_BASE_URL": f"{base_url}/moorcheh/v1",
            "HTTP_PROXY": proxy_url,
            "HTTPS_PROXY": proxy_url,
            "ALL_PROXY": proxy_url,
            "http_proxy": proxy_url,
            "https_proxy": proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`memanto ARGS…` as its user runs it."""
        return subprocess.run(
            [str(self.venv / "bin" / "memanto"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def python(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A Python script run with the package's interpreter (its SDK)."""
        return subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", script],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def outside_attempts(self) -> list[str]:
        return self.net_log.read_text().splitlines() if self.net_log.exists() else []


@contextlib.contextmanager
def proxy_recorder() -> Iterator[ProxyRecorder]:
    recorder = ProxyRecorder()
    try:
        yield recorder
    finally:
        recorder.close()
