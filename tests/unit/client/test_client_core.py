"""Pure pieces of the client core: waits, URLs, times, tokens and the error classes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from memanto_server.client import (
    AuthenticationError,
    ConflictError,
    MemantoError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    ValidationError,
)
from memanto_server.client._sessions import token_session_id
from memanto_server.client._transport import MAX_WAIT_SECONDS, parse_retry_after, retry_delay
from memanto_server.client._wire import normalize_base_url, parse_time, wire_time
from memanto_server.client.errors import error_from_problem


def test_retry_after_is_honoured_and_capped() -> None:
    assert retry_delay(1, "1") == 1.0
    assert retry_delay(3, "0") == 0.0
    assert retry_delay(1, "2.5") == 2.5
    assert retry_delay(1, "3600") == MAX_WAIT_SECONDS
    later = datetime.now(UTC) + timedelta(seconds=20)
    assert 15 < retry_delay(1, format_datetime(later, usegmt=True)) <= 20
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_without_retry_after_grows_with_jitter_and_is_capped() -> None:
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)):
        waits = {retry_delay(attempt, None) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered
    assert all(MAX_WAIT_SECONDS / 2 <= retry_delay(20, None) <= MAX_WAIT_SECONDS for _ in range(20))
    assert retry_delay(2, "garbage") <= 1.0


def test_base_url_is_normalized() -> None:
    assert normalize_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert normalize_base_url("http://h:1/api/v2/") == "http://h:1"
    assert normalize_base_url("https://example.test/memanto") == "https://example.test/memanto"


def test_times() -> None:
    assert parse_time("2026-03-30T16:30:00Z") == datetime(2026, 3, 30, 16, 30, tzinfo=UTC)
    assert parse_time("not a time") is None
    assert parse_time(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert wire_time(datetime(2026, 1, 1, 12)) == "2026-01-01T12:00:00.000000Z"
    assert wire_time("2026-01-01") == "2026-01-01T00:00:00.000000Z"  # a date: its midnight, UTC
    assert wire_time("2026-01-01T12:00:00+02:00") == "2026-01-01T10:00:00.000000Z"
    assert wire_time("last tuesday") == "last tuesday"  # for the server to refuse, with its reason


def test_session_id_is_read_from_the_token() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"session_id": "sess_abc"}).encode()).rstrip(b"=").decode()
    assert token_session_id(f"eyJhbGciOiJIUzI1NiJ9.{payload}.signature") == "sess_abc"
    assert token_session_id("not-a-token") is None
    assert token_session_id("a.%%%.c") is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, ValidationError),
        (429, RateLimitedError),
        (503, ServiceUnavailableError),
        (400, MemantoError),
        (500, MemantoError),
    ],
)
def test_errors_by_status(status: int, cls: type[MemantoError]) -> None:
    problem = {"type": "t", "title": "T", "status": status, "detail": "what went wrong", "code": "some_code"}
    error = error_from_problem(status, problem, headers={"Retry-After": "2", "X-Request-ID": "req-1"})
    assert type(error) is cls
    assert (error.status, error.code, error.detail, error.problem) == (status, "some_code", "what went wrong", problem)
    assert error.request_id == "req-1"
    assert str(error) == f"{status} some_code: what went wrong"
    if isinstance(error, RateLimitedError | ServiceUnavailableError):
        assert error.retry_after == 2


def test_validation_errors_and_bodies_that_are_not_problems() -> None:
    problem = {
        "status": 422,
        "detail": "limit: too big",
        "code": "validation_error",
        "errors": [{"field": "limit", "message": "too big", "source": "query"}],
    }
    error = error_from_problem(422, problem)
    assert isinstance(error, ValidationError)
    assert error.errors == problem["errors"]
    plain = error_from_problem(502, None, text="<html>Bad gateway</html>")
    assert (plain.status, plain.code, plain.problem, plain.detail) == (502, None, None, "<html>Bad gateway</html>")
    assert error_from_problem(404, None).detail == "HTTP 404"
