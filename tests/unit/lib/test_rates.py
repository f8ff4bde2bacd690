"""MEMANTO_RATE_LIMIT and MEMANTO_RATE_LIMIT_STORAGE_URL: what settings accept, the limiter understands."""

from __future__ import annotations

import pytest

from memanto_server.lib.rates import Rate
from memanto_server.lib.redis_client import storage_redis_url
from memanto_server.settings import Settings, SettingsError

SECRET = "s" * 32


def settings_with(**variables: str) -> Settings:
    return Settings.from_env({"MEMANTO_SECRET_KEY": SECRET} | {f"MEMANTO_{k}": v for k, v in variables.items()})


@pytest.mark.parametrize(
    ("text", "amount", "window_seconds"),
    [
        ("600/minute", 600, 60),
        ("10/second", 10, 1),
        ("10/seconds", 10, 1),
        ("100/5 minutes", 100, 300),
        ("100 / 5minutes", 100, 300),
        ("1000/hour", 1000, 3600),
        ("5 per minute", 5, 60),
        ("5 per 2 hours", 5, 7200),
        ("20000/day", 20000, 86_400),
        ("7/1 day", 7, 86_400),
        ("60/MINUTE", 60, 60),
        ("3 PER Second", 3, 1),
    ],
)
def test_every_limit_settings_accept_is_understood(text: str, amount: int, window_seconds: int) -> None:
    assert settings_with(RATE_LIMIT=text).rate_limit == text
    assert Rate.parse(text) == Rate(amount, window_seconds)


@pytest.mark.parametrize(
    "text", ["600", "0/minute", "600/fortnight", "600/0 minutes", "-1/minute", "600/minute;10/second", "1.5/second"]
)
def test_a_malformed_limit_stops_start_up_naming_the_variable(text: str) -> None:
    with pytest.raises(SettingsError, match="MEMANTO_RATE_LIMIT"):
        settings_with(RATE_LIMIT=text)
    with pytest.raises(ValueError, match="not a rate limit"):
        Rate.parse(text)


def test_no_limit_by_default() -> None:
    assert settings_with().rate_limit == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", "redis://127.0.0.1:6380/2"),
        ("rediss://cache:6380/0", "rediss://cache:6380/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        ("redis+unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis+cluster://a:7000,b:7001", "redis+cluster://a:7000,b:7001"),
        ("rediss+cluster://u:p@a:7000", "rediss+cluster://u:p@a:7000"),
        # the `limits` library's spellings, which the setting has always accepted
        ("async+redis://127.0.0.1:6380/0", "redis://127.0.0.1:6380/0"),
        ("async+redis+cluster://a:7000", "redis+cluster://a:7000"),
    ],
)
def test_storage_urls_the_setting_accepts_open_as_redis_urls(url: str, expected: str) -> None:
    assert settings_with(RATE_LIMIT_STORAGE_URL=url).rate_limit_storage_url == url
    assert storage_redis_url(url) == expected


def test_a_storage_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(SettingsError, match="MEMANTO_RATE_LIMIT_STORAGE_URL"):
        settings_with(RATE_LIMIT_STORAGE_URL="memcached://127.0.0.1:11211")
    with pytest.raises(ValueError, match="not a Redis URL"):
        storage_redis_url("memcached://127.0.0.1:11211")
