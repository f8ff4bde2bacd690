"""The client's one implementation, free of I/O: requests, decoding, retries and sessions.

Every operation is a generator that *yields steps* and receives their outcomes:

- `Send`   → the driver performs the HTTP request and sends back the `httpx.Response`,
             or the `httpx.TransportError` it raised;
- `Sleep`  → the driver waits that many seconds (`time.sleep` / `asyncio.sleep`);
- `Lock`, `Unlock` → the driver takes / gives back the handle's session lock, so that
             concurrent calls on one handle do not each activate a session;
- `Notify` → the driver calls the handle's `on_session` callback (awaiting it if needed).

The operation's return value is the decoded result; errors are raised from inside it.
`MemantoClient` and `AsyncMemantoClient` are two small drivers of these generators, so the
request building, response decoding, retry policy and session management exist once.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import random
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from memanto_server.agents.schemas import AgentDetail, AgentList, AgentSummary
from memanto_server.client.errors import (
    AuthenticationError,
    ConnectionFailedError,
    MemantoError,
    ValidationError,
    error_from_problem,
)
from memanto_server.memories.schemas import (
    AnswerResult,
    BatchStored,
    MemoryPage,
    MemoryRecord,
    RecallResult,
    RememberRequest,
    StoredMemory,
)
from memanto_server.sessions.schemas import (
    ActivatedSession,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    SessionHistory,
)

T = TypeVar("T")

API_PREFIX = "/api/v2"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
SESSION_EXPIRES_HEADER = "X-Session-Expires-At"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# 401 codes after which a fresh session (one activation) may succeed where the old one failed.
SESSION_GONE_CODES = frozenset({"session_expired", "session_ended", "session_superseded", "invalid_token"})
SERVER_DEFAULT_HOURS = 6.0  # what the server uses when activation or renewal names no duration
RETRY_STATUSES = frozenset({429, 503})
MAX_WAIT_SECONDS = 30.0
BACKOFF_BASE_SECONDS = 0.5
USER_AGENT = "memanto-python-client/0.1"

# Transport failures after which the request certainly did not reach the server: safe to
# retry any request. Anything else (read timeouts, broken connections) may have happened
# after the server acted, so only requests that are safe to repeat are retried then.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

SessionInfo = ActivatedSession | ExtendedSession
OnSession = Callable[[str, SessionInfo], Any]


class Retry(enum.Enum):
    SAFE = "safe"  # idempotent: GET, PATCH, DELETE, and remember with its Idempotency-Key
    UNSAFE = "unsafe"  # other POSTs: retried only when the request surely was not processed


@dataclass(frozen=True, slots=True)
class Send:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] | None
    content: bytes | None
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Lock:
    pass


@dataclass(frozen=True, slots=True)
class Unlock:
    pass


@dataclass(frozen=True, slots=True)
class Notify:
    callback: OnSession
    agent_id: str
    session: SessionInfo


Step = Send | Sleep | Lock | Unlock | Notify
Outcome = httpx.Response | httpx.TransportError | None
Op = Generator[Step, Outcome, T]

_encoder = msgspec.json.Encoder()


# ---------------------------------------------------------------------------------------
# Small pure helpers


def normalize_base_url(base_url: str) -> str:
    """`http://host:8000`: no trailing slash, and no `/api/v2` (the client adds it)."""
    url = base_url.strip().rstrip("/")
    return url.removesuffix(API_PREFIX).rstrip("/") or url


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from the API's ISO-8601 `Z` strings (None when unreadable)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def wire_time(value: str | datetime) -> str:
    """What the server reads for `created_after`/`created_before` (naive datetimes are taken as UTC)."""
    if isinstance(value, str):
        return value
    moment = parse_time(value)
    assert moment is not None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def token_session_id(token: str) -> str | None:
    """The `session_id` claim of a session token, read without verifying it (the server does)."""
    try:
        payload = token.split(".")[1]
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, msgspec.DecodeError):
        return None
    session_id = claims.get("session_id") if isinstance(claims, dict) else None
    return session_id if isinstance(session_id, str) else None


def segment(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(str(value), safe="")


def error_from_response(response: httpx.Response) -> MemantoError:
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


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# ---------------------------------------------------------------------------------------
# Session state of one agent handle


class SessionState:
    """What a handle knows about its agent's session; only operations of the core change it."""

    def __init__(
        self,
        agent_id: str,
        token: str | None = None,
        *,
        expires_at: datetime | str | None = None,
        on_session: OnSession | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.token = token
        self.session_id = token_session_id(token) if token else None
        self.expires_at = parse_time(expires_at) if token else None
        self.on_session = on_session

    def observe(self, token: str | None, response: httpx.Response) -> None:
        """Take the live expiry from a response to a request made with `token`."""
        if token is None or token != self.token:
            return  # an answer to an older session's request says nothing about this one
        expires = parse_time(response.headers.get(SESSION_EXPIRES_HEADER))
        if expires is not None:
            self.expires_at = expires

    def adopt(self, activated: ActivatedSession) -> None:
        self.token = activated.session_token
        self.session_id = activated.session_id
        self.expires_at = parse_time(activated.expires_at)

    def clear(self) -> None:
        self.token = None
        self.session_id = None
        self.expires_at = None


# ---------------------------------------------------------------------------------------
# The core


class ClientCore:
    """Builds every request, decides every retry and decodes every answer."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        max_retries: int,
        renew_threshold_minutes: float,
        default_hours: float | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if default_hours is not None and default_hours <= 0:
            raise ValueError("default_hours must be more than 0")
        self.base_url = base_url
        self.api_key = api_key
        self.max_retries = max_retries
        self.renew_threshold = timedelta(minutes=renew_threshold_minutes)
        self.default_hours = default_hours

    # -- one request, with retries -------------------------------------------------------

    def headers(self, token: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if token:
            headers["X-Session-Token"] = token
        if extra:
            headers.update(extra)
        return headers

    def exchange(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry: Retry = Retry.SAFE,
        session: SessionState | None = None,
        accept: frozenset[int] = frozenset(),
        max_retries: int | None = None,
        api: bool = True,
    ) -> Op[httpx.Response]:
        """Send one request until it gets a final answer: a 2xx (or a status in `accept`) is
        returned, any other status is raised as its typed error, and silence as
        `ConnectionFailedError`. 429 and 503 are retried after `Retry-After`; transport
        failures are retried when `retry` says repeating the request is safe."""
        all_headers = self.headers(token, headers)
        content = None
        if body is not None:
            content = _encoder.encode(body)
            all_headers["Content-Type"] = "application/json"
        send = Send(
            method=method,
            path=API_PREFIX + path if api else path,
            params=tuple((k, str(v)) for k, v in params if v is not None) if params else None,
            content=content,
            headers=all_headers,
        )
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            outcome = yield send
            if isinstance(outcome, httpx.Response):
                if session is not None:
                    session.observe(token, outcome)
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
        response = yield from self.exchange(method, path, **options)
        return decode(response, type_)

    def call_empty(self, method: str, path: str, **options: Any) -> Op[None]:
        yield from self.exchange(method, path, **options)
        return None

    # -- routes of the API key and of explicit tokens -----------------------------------

    def health(self) -> Op[dict[str, Any]]:
        response = yield from self.exchange("GET", "/health/ready", accept=frozenset({503}), max_retries=0, api=False)
        try:
            data = msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            raise MemantoError(
                f"unexpected health answer ({response.status_code})", status=response.status_code
            ) from exc
        if not isinstance(data, dict):
            raise MemantoError(f"unexpected health answer ({response.status_code})", status=response.status_code)
        return data

    def create_agent(self, agent_id: str, description: str | None = None) -> Op[AgentSummary]:
        body = _drop_none({"agent_id": agent_id, "description": description})
        return self.call(AgentSummary, "POST", "/agents", body=body, retry=Retry.UNSAFE)

    def list_agents(self, limit: int = 50, cursor: str | None = None) -> Op[AgentList]:
        return self.call(AgentList, "GET", "/agents", params=[("limit", limit), ("cursor", cursor)])

    def get_agent(self, agent_id: str) -> Op[AgentDetail]:
        return self.call(AgentDetail, "GET", f"/agents/{segment(agent_id)}")

    def delete_agent(self, agent_id: str) -> Op[None]:
        return self.call_empty("DELETE", f"/agents/{segment(agent_id)}")

    def agent_sessions(self, agent_id: str, limit: int = 20, cursor: str | None = None) -> Op[SessionHistory]:
        return self.call(
            SessionHistory,
            "GET",
            f"/agents/{segment(agent_id)}/sessions",
            params=[("limit", limit), ("cursor", cursor)],
        )

    def activate(self, agent_id: str, duration_hours: float | None = None) -> Op[ActivatedSession]:
        body = {"duration_hours": duration_hours} if duration_hours is not None else None
        return self.call(
            ActivatedSession, "POST", f"/agents/{segment(agent_id)}/activate", body=body, retry=Retry.UNSAFE
        )

    def current(self, token: str) -> Op[CurrentSession]:
        return self.call(CurrentSession, "GET", "/session/current", token=token)

    def extend(self, token: str, hours: float) -> Op[ExtendedSession]:
        return self.call(
            ExtendedSession, "POST", "/session/extend", body={"extend_hours": hours}, token=token, retry=Retry.UNSAFE
        )

    def deactivate(self, agent_id: str, token: str | None = None) -> Op[EndedSession]:
        return self.call(
            EndedSession, "POST", f"/agents/{segment(agent_id)}/deactivate", token=token, retry=Retry.UNSAFE
        )

    # -- session management of a handle --------------------------------------------------

    def _activate_for(self, st: SessionState) -> Op[ActivatedSession]:
        """A new session for the handle (the caller holds the session lock)."""
        activated = yield from self.activate(st.agent_id, self.default_hours)
        st.adopt(activated)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, activated)
        return activated

    def _renew(self, st: SessionState, token: str) -> Op[None]:
        """Extend the handle's session, or start a new one when it cannot be extended."""
        try:
            extended = yield from self.extend(token, self.default_hours or SERVER_DEFAULT_HOURS)
        except ValidationError:
            # Over the session's longest lifetime (or an extension the server refuses).
            yield from self._activate_for(st)
            return
        except AuthenticationError as exc:
            if exc.code not in SESSION_GONE_CODES:
                raise
            yield from self._activate_for(st)
            return
        if st.token == token:
            st.expires_at = parse_time(extended.expires_at)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, extended)

    def prepare(self, st: SessionState, *, renew: bool = True) -> Op[str]:
        """A live session for the handle: activate when it has none; with `renew`, learn its
        expiry when unknown and extend it when less than the threshold is left."""
        yield Lock()
        if st.token is None:
            yield from self._activate_for(st)
        elif renew:
            token = st.token
            if st.expires_at is None:
                try:
                    current = yield from self.exchange("GET", "/session/current", token=token, session=st)
                except AuthenticationError as exc:
                    if exc.code not in SESSION_GONE_CODES:
                        raise
                    yield from self._activate_for(st)
                else:
                    info = decode(current, CurrentSession)
                    st.session_id = info.session_id
                    st.expires_at = st.expires_at or parse_time(info.expires_at)
            if st.token == token and st.expires_at is not None:
                left = st.expires_at - datetime.now(UTC)
                if left <= timedelta(0):
                    yield from self._activate_for(st)
                elif left < self.renew_threshold:
                    yield from self._renew(st, token)
        yield Unlock()
        assert st.token is not None
        return st.token

    def managed(
        self,
        st: SessionState,
        type_: type[T] | None,
        method: str,
        path: str,
        *,
        renew: bool = True,
        **options: Any,
    ) -> Op[T]:
        """A token request on the handle's session: prepared first, and retried once on a
        new session when the server says the session is gone (expired, ended, superseded)."""
        yield from self.prepare(st, renew=renew)
        for attempt in range(2):
            token = st.token
            try:
                response = yield from self.exchange(method, path, token=token, session=st, **options)
            except AuthenticationError as exc:
                if attempt or exc.code not in SESSION_GONE_CODES:
                    raise
                yield Lock()
                if st.token == token:  # not already replaced by a concurrent call
                    yield from self._activate_for(st)
                yield Unlock()
                continue
            return None if type_ is None else decode(response, type_)  # type: ignore[return-value]
        raise AssertionError("unreachable")  # pragma: no cover

    def _memories(self, st: SessionState, suffix: str = "") -> str:
        return f"/agents/{segment(st.agent_id)}{suffix}"

    # -- the handle's operations --------------------------------------------------------

    def h_current(self, st: SessionState) -> Op[CurrentSession]:
        result = yield from self.managed(st, CurrentSession, "GET", "/session/current")
        st.session_id = result.session_id
        return result

    def h_extend(self, st: SessionState, hours: float) -> Op[ExtendedSession]:
        extended = yield from self.managed(
            st,
            ExtendedSession,
            "POST",
            "/session/extend",
            renew=False,
            body={"extend_hours": hours},
            retry=Retry.UNSAFE,
        )
        st.expires_at = parse_time(extended.expires_at)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, extended)
        return extended

    def h_deactivate(self, st: SessionState) -> Op[EndedSession]:
        token = st.token
        try:
            ended = yield from self.deactivate(st.agent_id, token)
        except AuthenticationError as exc:
            if token is not None and exc.code in SESSION_GONE_CODES and st.token == token:
                st.clear()  # the token is dead either way
            raise
        if st.token == token:
            st.clear()
        return ended

    def h_remember(
        self,
        st: SessionState,
        content: str,
        *,
        type: str = "fact",
        title: str | None = None,
        tags: Sequence[str] | None = None,
        confidence: float | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Op[StoredMemory]:
        body = _drop_none(
            {
                "content": content,
                "type": type,
                "title": title,
                "tags": list(tags) if tags is not None else None,
                "confidence": confidence,
                "source": source,
                "metadata": dict(metadata) if metadata is not None else None,
            }
        )
        # One key for every attempt of this call, re-activations included: stored once.
        key = idempotency_key or str(uuid.uuid4())
        return self.managed(
            st,
            StoredMemory,
            "POST",
            self._memories(st, "/remember"),
            body=body,
            headers={IDEMPOTENCY_HEADER: key},
            retry=Retry.SAFE,
        )

    def h_batch_remember(
        self, st: SessionState, memories: Sequence[Mapping[str, Any] | RememberRequest]
    ) -> Op[BatchStored]:
        items = [m if isinstance(m, RememberRequest) else dict(m) for m in memories]
        # Items that all carry their own idempotency_key make the whole batch safe to repeat.
        keyed = bool(items) and all(
            (m.idempotency_key if isinstance(m, RememberRequest) else m.get("idempotency_key")) for m in items
        )
        return self.managed(
            st,
            BatchStored,
            "POST",
            self._memories(st, "/batch-remember"),
            body={"memories": items},
            retry=Retry.SAFE if keyed else Retry.UNSAFE,
        )

    def h_recall(
        self,
        st: SessionState,
        query: str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        min_score: float | None = None,
        cursor: str | None = None,
    ) -> Op[RecallResult]:
        body = _drop_none(
            {
                "query": query,
                "limit": limit,
                "type": type if type is None or isinstance(type, str) else list(type),
                "tags": list(tags) if tags is not None else None,
                "created_after": wire_time(created_after) if created_after is not None else None,
                "created_before": wire_time(created_before) if created_before is not None else None,
                "min_score": min_score,
                "cursor": cursor,
            }
        )
        return self.managed(st, RecallResult, "POST", self._memories(st, "/recall"), body=body, retry=Retry.UNSAFE)

    def h_answer(self, st: SessionState, question: str, limit: int = 5) -> Op[AnswerResult]:
        body = {"question": question, "limit": limit}
        return self.managed(st, AnswerResult, "POST", self._memories(st, "/answer"), body=body, retry=Retry.UNSAFE)

    def h_list_memories(
        self,
        st: SessionState,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Op[MemoryPage]:
        params: list[tuple[str, Any]] = []
        for value in [type] if isinstance(type, str) else type or []:
            params.append(("type", value))
        params.extend(("tags", tag) for tag in tags or [])
        if created_after is not None:
            params.append(("created_after", wire_time(created_after)))
        if created_before is not None:
            params.append(("created_before", wire_time(created_before)))
        params += [("limit", limit), ("cursor", cursor)]
        return self.managed(st, MemoryPage, "GET", self._memories(st, "/memories"), params=params)

    def h_get_memory(self, st: SessionState, memory_id: str) -> Op[MemoryRecord]:
        return self.managed(st, MemoryRecord, "GET", self._memories(st, f"/memories/{segment(memory_id)}"))

    def h_update_memory(self, st: SessionState, memory_id: str, fields: Mapping[str, Any]) -> Op[MemoryRecord]:
        if not fields:
            raise ValueError("update_memory needs at least one field to change")
        body = {k: list(v) if k == "tags" and v is not None else v for k, v in fields.items()}
        return self.managed(st, MemoryRecord, "PATCH", self._memories(st, f"/memories/{segment(memory_id)}"), body=body)

    def h_delete_memory(self, st: SessionState, memory_id: str) -> Op[None]:
        return self.managed(st, None, "DELETE", self._memories(st, f"/memories/{segment(memory_id)}"))
