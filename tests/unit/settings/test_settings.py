"""Settings from MEMANTO_* variables (issue 2, Set-up): defaults, bad values, secrets."""

from __future__ import annotations

import multiprocessing
import stat
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from memanto_server.settings import Settings, SettingsError, key_id, load_or_create_secret

SECRET = "s" * 32  # exactly the shortest accepted secret
OTHER_SECRET = "o" * 40
THIRD_SECRET = "t" * 48


def env(**variables: str) -> dict[str, str]:
    """A MEMANTO_* environment with a valid secret unless one is given."""
    environ = {f"MEMANTO_{name}": value for name, value in variables.items()}
    environ.setdefault("MEMANTO_SECRET_KEY", SECRET)
    return environ


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- defaults -------------------------------------------------------------------------------------------------


def test_defaults_when_only_a_secret_is_given() -> None:
    settings = Settings.from_env({"MEMANTO_SECRET_KEY": SECRET})
    assert settings.env == "development"
    assert not settings.is_production
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/memanto"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_prefix == "memanto:"
    assert settings.secret_key == SECRET
    assert settings.previous_secret_keys == ()
    assert settings.session_default_hours == 6
    assert settings.session_max_hours == 24
    assert settings.session_max_total_hours == 168


def test_from_env_reads_only_the_given_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMANTO_REDIS_PREFIX", "from-process-env:")
    settings = Settings.from_env({"MEMANTO_SECRET_KEY": SECRET})
    assert settings.redis_prefix == "memanto:"


def test_values_are_read_and_converted() -> None:
    settings = Settings.from_env(
        env(
            ENV="Production",
            DATABASE_URL="postgres://u@db.example:6543/other",
            REDIS_URL="rediss://cache.example:6380/2",
            REDIS_PREFIX="tenant-a:",
            SESSION_DEFAULT_HOURS="1.5",
            SESSION_MAX_HOURS="12",
            SESSION_MAX_TOTAL_HOURS="48",
            DB_POOL_MAX="7",
            LOG_LEVEL="debug",
        )
    )
    assert settings.is_production
    assert settings.database_url == "postgres://u@db.example:6543/other"
    assert settings.redis_url == "rediss://cache.example:6380/2"
    assert settings.redis_prefix == "tenant-a:"
    assert settings.session_default_hours == 1.5
    assert settings.session_max_hours == 12
    assert settings.session_max_total_hours == 48
    assert settings.db_pool_max == 7
    assert settings.log_level == "DEBUG"


def test_empty_values_mean_the_default() -> None:
    settings = Settings.from_env(env(SESSION_DEFAULT_HOURS="", REDIS_PREFIX="", ENV=""))
    assert settings.session_default_hours == 6
    assert settings.redis_prefix == "memanto:"
    assert settings.env == "development"


# --- bad values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"SESSION_DEFAULT_HOURS": "abc"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
        ({"SESSION_DEFAULT_HOURS": "0"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
        ({"SESSION_DEFAULT_HOURS": "-2"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
        ({"SESSION_MAX_HOURS": "nan"}, "MEMANTO_SESSION_MAX_HOURS"),
        ({"SESSION_MAX_TOTAL_HOURS": "inf"}, "MEMANTO_SESSION_MAX_TOTAL_HOURS"),
        ({"ENV": "staging"}, "MEMANTO_ENV"),
        ({"DATABASE_URL": "mysql://x"}, "MEMANTO_DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "MEMANTO_REDIS_URL"),
        ({"DB_POOL_MAX": "0"}, "MEMANTO_DB_POOL_MAX"),
        ({"DB_POOL_MAX": "many"}, "MEMANTO_DB_POOL_MAX"),
        ({"DB_POOL_MIN": "5", "DB_POOL_MAX": "2"}, "MEMANTO_DB_POOL_MIN"),
        ({"LOG_LEVEL": "chatty"}, "MEMANTO_LOG_LEVEL"),
        ({"SESSION_DEFAULT_HOURS": "30"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
        ({"SESSION_DEFAULT_HOURS": "10", "SESSION_MAX_HOURS": "8"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
        ({"SESSION_MAX_HOURS": "200"}, "MEMANTO_SESSION_MAX_HOURS"),
        ({"SECRET_KEY": "s" * 31}, "MEMANTO_SECRET_KEY"),
        ({"PREVIOUS_SECRET_KEYS": f"{OTHER_SECRET},too-short"}, "MEMANTO_PREVIOUS_SECRET_KEYS"),
    ],
    ids=lambda value: ",".join(f"{k}={v[:12]}" for k, v in value.items()) if isinstance(value, dict) else value,
)
def test_a_bad_value_stops_with_an_error_naming_the_variable(
    variables: dict[str, str], named: str, tmp_path: Path
) -> None:
    environ = env(SECRET_FILE=str(tmp_path / "secret_key"), **variables)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert named in str(caught.value)
    assert not (tmp_path / "secret_key").exists()


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"MEMANTO_ENV": "production", "MEMANTO_SECRET_FILE": str(secret_file)})
    assert "MEMANTO_SECRET_KEY" in str(caught.value)
    assert not secret_file.exists(), "production must never generate a secret"


def test_production_ignores_a_development_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(OTHER_SECRET + "\n")
    with pytest.raises(SettingsError, match="MEMANTO_SECRET_KEY"):
        Settings.from_env({"MEMANTO_ENV": "production", "MEMANTO_SECRET_FILE": str(secret_file)})


@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_secret_shorter_than_32_bytes_is_refused(environment: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MEMANTO_SECRET_KEY"):
        Settings.from_env(env(ENV=environment, SECRET_KEY="x" * 31, SECRET_FILE=str(tmp_path / "f")))


def test_the_32_byte_limit_counts_bytes_not_characters() -> None:
    # 16 two-byte characters are 32 bytes: long enough. 16 characters of 31 bytes are not.
    assert Settings.from_env(env(ENV="production", SECRET_KEY="é" * 16)).secret_key == "é" * 16
    with pytest.raises(SettingsError, match="MEMANTO_SECRET_KEY"):
        Settings.from_env(env(ENV="production", SECRET_KEY="é" * 15 + "x"))


def test_production_with_a_long_enough_secret_starts() -> None:
    settings = Settings.from_env({"MEMANTO_ENV": "production", "MEMANTO_SECRET_KEY": OTHER_SECRET})
    assert settings.is_production
    assert settings.secret_key == OTHER_SECRET


# --- secret rotation ------------------------------------------------------------------------------------------


def test_previous_secret_keys_are_a_comma_list() -> None:
    settings = Settings.from_env(env(PREVIOUS_SECRET_KEYS=f" {OTHER_SECRET} ,{THIRD_SECRET},, "))
    assert settings.previous_secret_keys == (OTHER_SECRET, THIRD_SECRET)


def test_signing_keys_put_the_current_secret_first() -> None:
    settings = Settings.from_env(env(SECRET_KEY=THIRD_SECRET, PREVIOUS_SECRET_KEYS=f"{SECRET},{OTHER_SECRET}"))
    keys = settings.signing_keys
    assert list(keys) == [key_id(THIRD_SECRET), key_id(SECRET), key_id(OTHER_SECRET)]
    assert list(keys.values()) == [THIRD_SECRET, SECRET, OTHER_SECRET]
    assert len(set(keys)) == 3
    for kid, secret in keys.items():
        assert secret not in kid, "a kid must not reveal its secret"


def test_key_ids_are_stable_and_distinct() -> None:
    assert key_id(SECRET) == key_id(SECRET)
    assert key_id(SECRET) != key_id(OTHER_SECRET)


# --- the development secret -----------------------------------------------------------------------------------


def test_development_generates_a_secret_once_into_the_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "nested" / ".memanto-dev" / "secret_key"
    environ = {"MEMANTO_SECRET_FILE": str(secret_file)}

    first = Settings.from_env(environ)
    assert len(first.secret_key.encode()) >= 32
    assert secret_file.is_file()
    assert mode_of(secret_file) == 0o600
    assert secret_file.read_text().strip() == first.secret_key

    second = Settings.from_env(environ)
    assert second.secret_key == first.secret_key
    assert list(second.signing_keys) == list(first.signing_keys)


def test_each_secret_file_gets_its_own_secret(tmp_path: Path) -> None:
    one = Settings.from_env({"MEMANTO_SECRET_FILE": str(tmp_path / "one")})
    two = Settings.from_env({"MEMANTO_SECRET_FILE": str(tmp_path / "two")})
    assert one.secret_key != two.secret_key


def test_a_given_secret_key_wins_over_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    settings = Settings.from_env({"MEMANTO_SECRET_KEY": OTHER_SECRET, "MEMANTO_SECRET_FILE": str(secret_file)})
    assert settings.secret_key == OTHER_SECRET
    assert not secret_file.exists()


def test_an_existing_secret_file_is_used(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(THIRD_SECRET + "\n")
    assert Settings.from_env({"MEMANTO_SECRET_FILE": str(secret_file)}).secret_key == THIRD_SECRET


def test_a_too_short_secret_file_is_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text("short\n")
    with pytest.raises(SettingsError, match="secret_key"):
        Settings.from_env({"MEMANTO_SECRET_FILE": str(secret_file)})
    assert secret_file.read_text() == "short\n", "a bad secret file must not be silently replaced"


def _race_for_secret(path: str, barrier: Any) -> str:
    """Run in a worker: wait until every worker is ready, then all load-or-create at once."""
    barrier.wait(timeout=60)
    return load_or_create_secret(path)


def test_threads_creating_the_secret_at_once_agree(tmp_path: Path) -> None:
    workers = 16
    barrier = threading.Barrier(workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for round_number in range(20):
            directory = tmp_path / f"round-{round_number}"
            path = directory / "secret_key"
            secrets = set(pool.map(_race_for_secret, [str(path)] * workers, [barrier] * workers))
            assert len(secrets) == 1, f"round {round_number}: {len(secrets)} different secrets"
            assert path.read_text().strip() == secrets.pop()
            assert [p.name for p in directory.iterdir()] == ["secret_key"], "temporary files were left behind"


def test_processes_creating_the_secret_at_once_agree(tmp_path: Path) -> None:
    workers = 8
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        barrier = manager.Barrier(workers)
        for round_number in range(10):
            directory = tmp_path / f"round-{round_number}"
            path = directory / "secret_key"
            futures = [pool.submit(_race_for_secret, str(path), barrier) for _ in range(workers)]
            secrets = {future.result(timeout=120) for future in futures}
            assert len(secrets) == 1, f"round {round_number}: {len(secrets)} different secrets"
            assert path.read_text().strip() == secrets.pop()
            assert mode_of(path) == 0o600
            assert [p.name for p in directory.iterdir()] == ["secret_key"], "temporary files were left behind"
