"""One request until it has a final answer: headers, retries, and decoding of answers and problems."""

from __future__ import annotations

import email.utils
import enum
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from memanto_server.client._steps import Op, Send, Sleep, T
from memanto_server.client._wire import API_PREFIX
from memanto_server.client.errors import ConnectionFailedError, MemantoError, error_from_problem

USER_AGENT = "memanto-python-client/0.1"
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}  # on every request of a driver
RETRY_STATUSES = frozenset({429, 503})
MAX_WAIT_SECONDS = 30.0
BACKOFF_BASE_SECONDS = 0.5

# Transport failures after which the request certainly did not reach the server: safe to
# retry any request. Anything else (read timeouts, broken connections) may have happened
# after the server acted, so only requests that are safe to repeat are retried then.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_encoder = msgspec.json.Encoder()


class Retry(enum.Enum):
    SAFE = "safe"  # idempotent: GET, PATCH, DELETE, and remember with its Idempotency-Key
    UNSAFE = "unsafe"  # other POSTs: retried only when the request surely was not processed


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(attempt: int, retry_after: str | None) -> float:
    """How long to wait before retry number `attempt` (1-based): the server's word, capped at
    30 s, or exponential backoff with jitter when it said nothing."""
    told = parse_retry_after(retry_after)
    if told is not None:
        return min(MAX_WAIT_SECONDS, told)
    ceiling = min(MAX_WAIT_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def error_from_response(response: httpx.Response) -> MemantoError:
    """The typed error of an answer that is not a success (its problem details when it has them)."""
    problem: dict[str, Any] | None = None
    try:
        decoded = msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict):
        problem = decoded
    text = "" if problem is not None else response.text
    if not text and problem is None:
        text = response.reason_phrase
    return error_from_problem(response.status_code, problem, text=text, headers=response.headers)


def decode(response: httpx.Response, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MemantoError(
            f"unexpected answer from the server ({response.status_code}): {exc}",
            status=response.status_code,
            headers=response.headers,
        ) from exc


class Transport:
    """Builds every request, decides every retry and turns every failure into its typed error."""

    def __init__(self, base_url: str, api_key: str | None, *, max_retries: int) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.base_url = base_url
        self.api_key = api_key
        self.max_retries = max_retries

    def headers(self, token: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if token:
            headers["X-Session-Token"] = token
        if extra:
            headers.update(extra)
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        api: bool = True,
    ) -> Send:
        """The request as the driver sends it (`api`: under `/api/v2`)."""
        all_headers = self.headers(token, headers)
        content = None
        if body is not None:
            content = _encoder.encode(body)
            all_headers["Content-Type"] = "application/json"
        return Send(
            method=method,
            path=API_PREFIX + path if api else path,
            params=tuple((k, str(v)) for k, v in params if v is not None) if params else None,
            content=content,
            headers=all_headers,
        )

    def exchange(
        self,
        method: str,
        path: str,
        *,
        retry: Retry = Retry.SAFE,
        observe: Callable[[httpx.Response], None] | None = None,
        accept: frozenset[int] = frozenset(),
        max_retries: int | None = None,
        **request: Any,
    ) -> Op[httpx.Response]:
        """Send one request until it gets a final answer: a 2xx (or a status in `accept`) is
        returned, any other status is raised as its typed error, and silence as
        `ConnectionFailedError`. 429 and 503 are retried after `Retry-After`; transport
        failures are retried when `retry` says repeating the request is safe. `observe` sees
        every answer, the retried ones too (the session upkeep reads the live expiry there)."""
        send = self.request(method, path, **request)
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            outcome = yield send
            if isinstance(outcome, httpx.Response):
                if observe is not None:
                    observe(outcome)
                status = outcome.status_code
                if status in accept or outcome.is_success:
                    return outcome
                if status in RETRY_STATUSES and attempt < retries:
                    attempt += 1
                    yield Sleep(retry_delay(attempt, outcome.headers.get("Retry-After")))
                    continue
                raise error_from_response(outcome)
            if not isinstance(outcome, httpx.TransportError):  # pragma: no cover - a driver bug
                raise TypeError(f"a Send step needs a response or a transport error, not {outcome!r}")
            if attempt < retries and (retry is Retry.SAFE or isinstance(outcome, NOT_SENT_ERRORS)):
                attempt += 1
                yield Sleep(retry_delay(attempt, None))
                continue
            raise ConnectionFailedError(
                f"cannot reach the Memanto server at {self.base_url}: {type(outcome).__name__}"
                + (f" ({outcome})" if str(outcome) else ""),
                cause=outcome,
            ) from outcome

    def call(self, type_: type[T], method: str, path: str, **options: Any) -> Op[T]:
        """`exchange`, its answer decoded as `type_`."""
        response = yield from self.exchange(method, path, **options)
        return decode(response, type_)

    def call_empty(self, method: str, path: str, **options: Any) -> Op[None]:
        """`exchange` of a route that answers without a body (204)."""
        yield from self.exchange(method, path, **options)
        return None
