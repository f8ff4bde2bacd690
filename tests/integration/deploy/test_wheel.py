"""The wheel is self-contained: installed anywhere, it migrates an empty database and serves.

Built from this checkout, installed into a fresh virtualenv outside the source tree (its
dependencies are this environment's own, reached through a path entry, so the test needs no
index and the checkout's editable install is not on the path), then run the way an operator
runs it: `memanto-server migrate` with no `MEMANTO_MIGRATIONS_DIR`, then `memanto-server serve`
until `/health/ready` answers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from memanto_server.lib.migrations import load_migrations
from tests.helpers.backends import REDIS_URL
from tests.helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of this checkout, with the environment's own setuptools (no download)."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    # The project's metadata builds without setuptools' deprecation warnings (license table, …).
    assert "deprecat" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr
    (built,) = out.glob("memanto_server-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed in it; returns its `bin` folder."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False, symlinks=True)
    bin_dir = home / "bin"
    python = bin_dir / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a wheel is a zip laid out for site-packages
    # The dependencies of this test environment (a path entry: its .pth files, the editable
    # install of the checkout among them, are not read).
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    entry_points = next(Path(site).glob("memanto_server-*.dist-info")) / "entry_points.txt"
    assert "memanto-server = memanto_server.cli.server:main" in entry_points.read_text()
    script = bin_dir / "memanto-server"
    script.write_text(f"#!{python}\nimport sys\nfrom memanto_server.cli.server import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return bin_dir


def test_the_wheel_carries_its_migrations_and_lua_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(
        n.rsplit("/", 1)[1].removesuffix(".sql") for n in names if n.startswith("memanto_server/migrations/")
    )
    assert shipped == [m.version for m in load_migrations()]
    assert {"memanto_server/sessions/lua/activate.lua", "memanto_server/ops/lua/ratelimit.lua"} <= names
    assert not any(n.startswith(("tests/", "bench/", "app/")) for n in names)


def test_installed_wheel_migrates_an_empty_database_and_serves(
    installed: Path, database_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(database_url)
    empty = urlunsplit(parts._replace(path=f"/memanto_wheel_{secrets.token_hex(4)}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMANTO_", "PYTHON"))}
    env.update(
        PATH=f"{installed}:{env.get('PATH', '')}",
        MEMANTO_DATABASE_URL=empty,
        MEMANTO_REDIS_URL=REDIS_URL,
        MEMANTO_REDIS_PREFIX=f"memanto-wheel-{secrets.token_hex(4)}:",
        MEMANTO_SECRET_KEY=secrets.token_urlsafe(48),
    )
    where = subprocess.run(
        [str(installed / "python"), "-c", "import memanto_server; print(memanto_server.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not the checkout

    migrate = subprocess.run(
        [str(installed / "memanto-server"), "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert f"applied {len(load_migrations())} migration(s)" in migrate.stdout

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(installed / "memanto-server"), "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the installed server never became ready"
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=15)
        drop = subprocess.run(
            [
                str(installed / "python"),
                "-c",
                "import asyncio, asyncpg, sys\n"
                "async def main():\n"
                "    conn = await asyncpg.connect(sys.argv[1])\n"
                "    await conn.execute(f'DROP DATABASE IF EXISTS \"{sys.argv[2]}\" WITH (FORCE)')\n"
                "    await conn.close()\n"
                "asyncio.run(main())\n",
                urlunsplit(parts._replace(path="/postgres")),
                urlsplit(empty).path.lstrip("/"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert drop.returncode == 0, drop.stderr
