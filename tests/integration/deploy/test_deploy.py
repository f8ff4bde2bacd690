"""The deployment files: compose.yaml, deploy/nginx.conf, Dockerfile, README's commands.

There is no Docker here, so these check what can be checked without it: compose.yaml
against the compose specification (check-jsonschema's bundled copy, offline), the nginx
config with `nginx -t` (where nginx is installed), and the Dockerfile by parsing it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
DOCKERFILE = ROOT / "Dockerfile"


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


# compose.yaml


def test_compose_file_validates_against_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check has teeth: a key the specification does not know is refused.
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    deploy:\n", "    replica_count: 3\n    deploy:\n", 1))
    assert broken.read_text() != COMPOSE.read_text()
    refused = check_compose_schema(broken)
    assert refused.returncode != 0, refused.stdout
    assert "replica_count" in refused.stdout + refused.stderr


def test_compose_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "migrate", "app", "worker", "nginx"}

    postgres = services["postgres"]
    assert "healthcheck" in postgres
    assert any(v.startswith("postgres-data:") for v in postgres["volumes"])

    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert "healthcheck" in redis
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert set(compose["volumes"]) == {"postgres-data", "redis-data"}

    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"  # one-shot
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    app = services["app"]
    assert app["deploy"]["replicas"] == 3
    assert app["command"][0] == "serve"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in app  # only nginx is published
    # Docker waits stop_grace_period before SIGKILL: longer than uvicorn's graceful shutdown.
    graceful = int(app["command"][app["command"].index("--graceful-timeout") + 1])
    assert int(app["stop_grace_period"].removesuffix("s")) > graceful

    # Embedding runs in the worker service, not in the API replicas.
    assert app["environment"]["MEMANTO_EMBEDDING_WORKER"] == "false"
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["healthcheck"] == {"disable": True}  # the image's check is for `serve`'s port
    assert "ports" not in worker
    assert "deploy" not in worker

    nginx = services["nginx"]
    assert nginx["ports"] == ["127.0.0.1:8000:8000"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert "app" in nginx["depends_on"]


def test_secrets_come_from_an_ignored_env_file(compose: dict[str, Any]) -> None:
    for name in ("migrate", "app", "worker"):
        service = compose["services"][name]
        assert service["env_file"] == [".env"]
        assert "MEMANTO_SECRET_KEY" not in service["environment"]
        assert service["environment"]["MEMANTO_ENV"] == "production"
    assert "${POSTGRES_PASSWORD" in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^MEMANTO_SECRET_KEY=$", example, re.MULTILINE)  # committed without a value
    assert re.search(r"^POSTGRES_PASSWORD=", example, re.MULTILINE)
    for ignore_file in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore_file).read_text().splitlines(), ignore_file
    if shutil.which("git") and (ROOT / ".git").exists():
        tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert tracked.stdout.strip() == ""


# deploy/nginx.conf


def test_nginx_balances_the_app_service_with_keepalive_and_request_ids(compose: dict[str, Any]) -> None:
    conf = NGINX_CONF.read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    name, body = upstream.groups()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.MULTILINE)
    assert servers == [("app", "8000")]  # the compose service: Docker's DNS answers with every replica
    assert "app" in compose["services"]
    assert re.search(r"^\s*keepalive\s+\d+;", body, re.MULTILINE)
    assert re.search(r"^\s*listen\s+8000;", conf, re.MULTILINE)
    assert f"proxy_pass http://{name};" in conf
    # Upstream keep-alive needs HTTP/1.1 and no `Connection: close` from the client.
    assert "proxy_http_version 1.1;" in conf
    assert 'proxy_set_header Connection "";' in conf
    for header in ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID"):
        assert re.search(rf"proxy_set_header\s+{header}\s", conf), header
    assert "$http_x_request_id" in conf  # the client's id passes through


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip(
            "nginx is not installed (e.g. `apt-get install nginx-light`); the config is not run through nginx -t"
        )
    # `app` resolves only on the compose network, and nginx resolves upstream names while
    # loading; outside compose it is the same config with that one name set to loopback.
    conf = NGINX_CONF.read_text()
    local = conf.replace("server app:8000;", "server 127.0.0.1:8000;")
    assert local.count("127.0.0.1:8000") == conf.count("app:8000") == 1
    (tmp_path / "nginx.conf").write_text(local)
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            "stderr",
            "-g",
            f"pid {tmp_path / 'nginx.pid'};",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (from its FROM on)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    defaults = dict(a.split("=", 1) for k, a in dockerfile_instructions(text) if k == "ARG" and "=" in a)
    stages = dockerfile_stages(text)
    assert len(stages) >= 2, "multi-stage: dependencies are installed in a stage that is not shipped"
    final = stages[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], final[0][1].split()[0])
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    assert any(k == "COPY" and "--from=" in a for k, a in final), "the final stage copies the built virtualenv"

    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage names a USER"
    assert users[-1].split(":")[0] not in ("root", "0")

    # No compiler or package installs in the shipped stage.
    for keyword, arg in final:
        if keyword == "RUN":
            assert not re.search(r"apt-get install|apk add|pip install|gcc|build-essential", arg), arg

    healthchecks = [a for k, a in final if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/health/live" in healthchecks[0]

    entrypoint = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    assert entrypoint == [["memanto-server"]]
    cmd = [json.loads(a) for k, a in final if k == "CMD"]
    assert len(cmd) == 1
    assert cmd[0][0] == "serve"
    # The migrations ship inside the package: nothing is copied or pointed at by hand.
    env = " ".join(a for k, a in final if k == "ENV")
    assert "MEMANTO_MIGRATIONS_DIR" not in env
    assert not any(k == "COPY" and "migrations" in a for k, a in final)


# README


def test_readme_first_commands_are_make_run_make_test_then_docker_compose_up() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    commands = [[line.split("#")[0].strip() for line in block.splitlines()] for block in blocks[:2]]
    # The first screen's two set-up commands, then the one for users with Docker.
    assert commands == [["make run", "make test"], ["docker compose up"]]


def test_compose_postgres_has_pgvector(compose: dict[str, Any]) -> None:
    """Recall by meaning needs pgvector (>= 0.8): the stock postgres images do not have it."""
    assert compose["services"]["postgres"]["image"].startswith("pgvector/pgvector:pg")
