"""The Python client (`memanto_server.client`) against a real server process over loopback.

The sync and async clients run in-process; the server is `memanto-server serve` on a free
port with the real Postgres and Redis. Outages are real too: a loopback HTTP server in
front of the real one that answers 503 (after forwarding, when the test says so), and a
server whose private `redis-server` is stopped and started again.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from memanto_server.client import (
    AgentHandle,
    AsyncAgentHandle,
    AsyncMemantoClient,
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    MemantoClient,
    MemantoError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
    ValidationError,
)
from memanto_server.memories.schemas import RecallResult, StoredMemory
from memanto_server.sessions.schemas import ActivatedSession, CurrentSession, EndedSession, ExtendedSession
from memanto_server.settings import Settings
from tests.helpers.http import parse_z
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port, private_redis, running_server, settings_env

pytestmark = pytest.mark.slow

SECONDS = 1 / 3600  # one second, in hours


@pytest.fixture
def server(server_url: str) -> str:
    """The run's shared server process (tests/fixtures/servers.py)."""
    return server_url


@pytest.fixture
def client(server: str, owner: OwnerKey) -> Iterator[MemantoClient]:
    with MemantoClient(server, owner.key) as memanto:
        yield memanto


class SessionLog:
    """An `on_session` callback that remembers what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ActivatedSession | ExtendedSession]] = []

    def __call__(self, agent_id: str, session: ActivatedSession | ExtendedSession) -> None:
        self.calls.append((agent_id, session))

    @property
    def kinds(self) -> list[str]:
        return ["activated" if isinstance(s, ActivatedSession) else "extended" for _, s in self.calls]

    @property
    def activations(self) -> list[ActivatedSession]:
        return [s for _, s in self.calls if isinstance(s, ActivatedSession)]


# ---------------------------------------------------------------------------------------
# A loopback HTTP server in front of the real one, for outages the test controls


class FlakyProxy:
    """Relays every request to `upstream`, except that requests whose path ends with `match`
    follow `plan` first, one action each: `"503"` answers 503 (`Retry-After: 1`) without
    forwarding; `"forward-503"` forwards (the server acts) and still answers 503, as a
    gateway that lost the server's answer would; `"forward-slow"` forwards and answers
    only after `slow_seconds` (longer than the client waits)."""

    def __init__(self, upstream: str, match: str, plan: list[str], slow_seconds: float = 1.0) -> None:
        self.upstream = upstream
        self.slow_seconds = slow_seconds
        self.match = match
        self.plan = list(plan)
        self.attempts: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=upstream, timeout=15)
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = False  # server_close() waits for every handler
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def action(self, path: str, headers: dict[str, str]) -> str:
        """What to do with a request: the plan's next action for a matching path, else forward."""
        if not path.split("?")[0].endswith(self.match):
            return "forward"
        with self._lock:
            self.attempts.append((time.monotonic(), headers))
            return self.plan.pop(0) if self.plan else "forward"

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        kept = {
            k: v
            for k, v in headers.items()
            if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
        }
        return self._http.request(method, path, headers=kept, content=body)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._http.close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """One request through a `FlakyProxy` (set as the class attribute `proxy`)."""

    proxy: FlakyProxy
    UNAVAILABLE = {
        "type": "https://memanto.dev/problems/dependency-unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the proxy says: try again shortly",
        "code": "dependency_unavailable",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = self.proxy.action(self.path, {k.lower(): v for k, v in self.headers.items()})
        upstream = None
        if action != "503":
            upstream = self.proxy.forward(self.command, self.path, dict(self.headers.items()), body)
        if action == "forward-slow":
            time.sleep(self.proxy.slow_seconds)
        if upstream is not None and action in ("forward", "forward-slow"):
            self._reply(upstream.status_code, upstream.content, upstream.headers)
        else:
            headers = {"content-type": "application/problem+json", "retry-after": "1"}
            self._reply(503, json.dumps(self.UNAVAILABLE).encode(), headers)

    def _reply(self, status: int, content: bytes, headers: Any) -> None:
        try:
            self.send_response(status)
            for name in ("content-type", "retry-after", "x-session-expires-at", "idempotent-replayed"):
                if name in headers:
                    self.send_header(name, headers[name])
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_DELETE = _handle


# ---------------------------------------------------------------------------------------
# The seed life cycle


def test_life_cycle_through_a_handle(client: MemantoClient) -> None:
    agent_id = unique_agent("client-life")
    log = SessionLog()
    agent = client.agent(agent_id, on_session=log)
    assert isinstance(agent, AgentHandle)
    assert agent.token is None
    assert agent.expires_at is None

    # Activated on first use.
    stored = agent.remember("Customer prefers email over phone calls", type="preference", tags=["contact"])
    assert isinstance(stored, StoredMemory)
    assert stored.status == "stored"
    assert stored.agent_id == agent_id
    assert log.kinds == ["activated"]
    assert agent.token == log.activations[0].session_token
    assert agent.session_id == stored.session_id == log.activations[0].session_id
    assert agent.replaced_because is None  # the handle's first session replaced nothing
    assert agent.expires_at is not None
    assert timedelta(hours=5.9) < agent.expires_at - datetime.now(UTC) <= timedelta(hours=6)

    _recall_answer_current_extend(client, agent, stored, log)

    ended = agent.deactivate()
    assert isinstance(ended, EndedSession)
    assert ended.session_id == stored.session_id
    assert ended.end_reason == "deactivated"
    assert ended.memories_stored == 1
    assert ended.memories_retrieved == 2
    assert agent.token is None
    assert agent.expires_at is None

    # The agent and its history are there through the API key routes.
    detail = client.get_agent(agent_id)
    assert detail.memory_count == 1
    assert detail.active_session is None
    history = client.agent_sessions(agent_id)
    assert [(s.session_id, s.end_reason) for s in history.sessions] == [(stored.session_id, "deactivated")]

    # The next call activates a new session by itself; the memory outlived the first one.
    again = agent.recall("email")
    assert again.session_id != stored.session_id
    assert [m.memory_id for m in again.memories] == [stored.memory_id]
    assert log.kinds == ["activated", "extended", "activated"]
    assert agent.replaced_because is None  # a new start after deactivate(), not a replacement


def _recall_answer_current_extend(
    client: MemantoClient, agent: AgentHandle, stored: StoredMemory, log: SessionLog
) -> None:
    recalled = agent.recall("email")
    assert isinstance(recalled, RecallResult)
    assert [m.memory_id for m in recalled.memories] == [stored.memory_id]
    assert recalled.memories[0].tags == ["contact"]

    answered = agent.answer("How does the customer like to be contacted?")
    assert "email" in answered.answer
    assert [s.memory_id for s in answered.sources] == [stored.memory_id]

    current = agent.current()
    assert isinstance(current, CurrentSession)
    assert current.session_id == stored.session_id
    assert current.memories_stored == 1
    assert current.memories_retrieved == 2
    assert current.extensions == 0

    before = agent.expires_at
    extended = agent.extend(2)
    assert isinstance(extended, ExtendedSession)
    assert extended.hours_added == 2
    assert parse_z(extended.expires_at) - parse_z(extended.previous_expires_at) == timedelta(hours=2)
    assert agent.expires_at == parse_z(extended.expires_at)
    assert agent.expires_at - before == timedelta(hours=2)
    assert log.kinds == ["activated", "extended"]
    assert client.current(agent.token or "").extensions == 1


def test_agents_and_sessions_by_api_key(client: MemantoClient) -> None:
    agent_id = unique_agent("client-key")
    created = client.create_agent(agent_id, description="front desk")
    assert created.agent_id == agent_id
    assert created.description == "front desk"
    with pytest.raises(ConflictError) as conflict:
        client.create_agent(agent_id)
    assert conflict.value.status == 409
    assert conflict.value.code == "agent_exists"

    others = [client.create_agent(unique_agent("client-key")).agent_id for _ in range(2)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = client.list_agents(limit=2, cursor=cursor)
        seen += [a.agent_id for a in page.agents]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted([agent_id, *others])

    activated = client.activate(agent_id, duration_hours=1.5)
    assert activated.expires_in_seconds == 5400
    current = client.current(activated.session_token)
    assert current.session_id == activated.session_id
    extended = client.extend(activated.session_token, 0.5)
    assert extended.hours_added == 0.5
    detail = client.get_agent(agent_id)
    assert detail.active_session is not None
    assert detail.active_session.session_id == activated.session_id

    ended = client.deactivate(agent_id)  # the API key alone
    assert ended.session_id == activated.session_id
    with pytest.raises(NotFoundError) as none_left:
        client.deactivate(agent_id)
    assert none_left.value.code == "no_active_session"
    with pytest.raises(AuthenticationError) as ended_token:
        client.current(activated.session_token)
    assert ended_token.value.code == "session_ended"

    client.delete_agent(agent_id)
    with pytest.raises(NotFoundError):
        client.get_agent(agent_id)


def test_memory_records_through_a_handle(client: MemantoClient) -> None:
    agent = client.agent(unique_agent("client-records"))
    batch = agent.batch_remember(
        [
            {"content": "Invoices go out by email on the 1st.", "type": "fact", "tags": ["billing"]},
            {"content": "Refunds over $500 need a manager.", "type": "instruction", "tags": ["billing"]},
            {"content": "Support hours are 8-18 CET.", "type": "decision"},
        ]
    )
    assert batch.stored == 3
    assert len(batch.memory_ids) == 3

    billing = agent.list_memories(tags=["billing"])
    assert sorted(m.memory_id for m in billing.memories) == sorted(batch.memory_ids[:2])
    decisions = agent.list_memories(type="decision")
    assert [m.memory_id for m in decisions.memories] == [batch.memory_ids[2]]
    everything = list(agent.iter_memories(limit=2))  # two pages and a bit
    assert sorted(m.memory_id for m in everything) == sorted(batch.memory_ids)

    refund_id = batch.memory_ids[1]
    record = agent.get_memory(refund_id)
    assert record.type == "instruction"
    changed = agent.update_memory(refund_id, tags=["billing", "refunds"], title="Refund rule")
    assert changed.tags == ["billing", "refunds"]
    assert changed.title == "Refund rule"
    assert agent.recall("manager refund", tags=["refunds"]).memories[0].memory_id == refund_id

    agent.delete_memory(refund_id)
    with pytest.raises(NotFoundError) as gone:
        agent.get_memory(refund_id)
    assert gone.value.code == "memory_not_found"

    # The same Idempotency-Key stores once and returns the first result.
    first = agent.remember("Prefers a morning call", idempotency_key="call-pref-1")
    second = agent.remember("Prefers a morning call", idempotency_key="call-pref-1")
    assert second.memory_id == first.memory_id
    assert agent.current().memories_stored == 4


# ---------------------------------------------------------------------------------------
# Session management


def test_renewal_near_expiry_of_a_known_token(server: str, owner: OwnerKey) -> None:
    with MemantoClient(server, owner.key, renew_threshold_minutes=60) as client:
        agent_id = unique_agent("client-renew")
        activated = client.activate(agent_id, duration_hours=0.05)  # 3 minutes
        log = SessionLog()
        agent = client.agent(agent_id, token=activated.session_token, on_session=log)
        assert agent.session_id == activated.session_id  # read from the token

        stored = agent.remember("renew me before the call")
        assert stored.session_id == activated.session_id  # the same session, extended
        assert log.kinds == ["extended"]
        current = client.current(activated.session_token)
        assert current.extensions == 1
        remaining = parse_z(current.expires_at) - datetime.now(UTC)
        assert timedelta(hours=6) < remaining <= timedelta(hours=6, minutes=3)
        assert agent.expires_at == parse_z(current.expires_at)

        # Far from expiry now: no more extensions.
        agent.recall("renew")
        agent.remember("still the same session")
        assert client.current(activated.session_token).extensions == 1
        assert log.kinds == ["extended"]


def test_renewal_uses_default_hours_and_the_expiry_header(server: str, owner: OwnerKey) -> None:
    with MemantoClient(server, owner.key, renew_threshold_minutes=20, default_hours=0.25) as client:
        log = SessionLog()
        agent = client.agent(unique_agent("client-renew"), on_session=log)
        agent.remember("first")  # activates for 15 minutes: under the threshold already
        assert log.kinds == ["activated"]
        assert log.activations[0].expires_in_seconds == 900
        token = agent.token or ""
        agent.remember("second")  # 15 minutes left, under 20: extends by 15 minutes first
        assert log.kinds == ["activated", "extended"]
        assert client.current(token).extensions == 1

        # An extension made elsewhere reaches the handle through X-Session-Expires-At.
        before = agent.expires_at
        assert before is not None
        client.extend(token, 1)
        agent.list_memories()
        assert agent.expires_at == before + timedelta(hours=1)
        assert log.kinds == ["activated", "extended"]  # 1 h 30 min left: nothing to renew


def test_renewal_over_the_lifetime_activates_a_new_session(server: str, owner: OwnerKey) -> None:
    # Every call wants to renew (the threshold is longer than a session may ever last), by
    # 24 h each time: after 6 extensions the 168 h lifetime is used up, and the 7th
    # renewal is refused (422), so the handle activates a new session instead.
    with MemantoClient(server, owner.key, renew_threshold_minutes=200 * 60, default_hours=24) as client:
        log = SessionLog()
        agent = client.agent(unique_agent("client-lifetime"), on_session=log)
        first = agent.remember("day one")
        for _ in range(6):
            assert agent.remember("another day").session_id == first.session_id
        assert log.kinds == ["activated"] + ["extended"] * 6
        current = agent.current()  # refused renewal → a new session
        assert current.session_id != first.session_id
        assert log.kinds == ["activated"] + ["extended"] * 6 + ["activated"]
        assert log.activations[-1].session_id == current.session_id == agent.session_id
        assert agent.replaced_because == "extension_refused"


def test_reactivation_after_expiry(server: str, owner: OwnerKey) -> None:
    with (
        MemantoClient(server, owner.key, renew_threshold_minutes=0, default_hours=2 * SECONDS) as client,
        MemantoClient(server, owner.key, renew_threshold_minutes=0) as patient,
    ):
        # The handle knows its session ran out (its own 2-second activation) …
        own_log = SessionLog()
        own = client.agent(unique_agent("client-expiry"), on_session=own_log)
        first = own.remember("before the session ran out")
        assert own_log.kinds == ["activated"]

        # … or believes it is still live (told so by its caller): the server's 401
        # `session_expired` makes it activate once and retry the call.
        other_id = unique_agent("client-expiry")
        short = client.activate(other_id, duration_hours=2 * SECONDS)
        stale_log = SessionLog()
        stale = patient.agent(
            other_id, token=short.session_token, on_session=stale_log, expires_at=datetime.now(UTC) + timedelta(days=1)
        )

        time.sleep(2.5)
        with pytest.raises(AuthenticationError) as expired:
            client.current(short.session_token)
        assert expired.value.code == "session_expired"

        second = own.remember("after the session ran out")
        assert second.session_id != first.session_id
        assert own_log.kinds == ["activated", "activated"]
        assert own_log.activations[-1].session_id == second.session_id
        assert own.replaced_because == "session_expired"  # it saw the expiry pass by itself

        stored = stale.remember("after the session ran out")
        assert stored.session_id != short.session_id
        assert stale_log.kinds == ["activated"]
        assert stale.token == stale_log.activations[0].session_token != short.session_token
        assert stale.replaced_because == "session_expired"  # the server said so
        assert [m.content for m in stale.list_memories().memories] == ["after the session ran out"]


def test_reactivation_after_supersede(client: MemantoClient) -> None:
    agent_id = unique_agent("client-supersede")
    log = SessionLog()
    reasons: list[str | None] = []  # what the callback reads: the reason is known when it is called

    def on_session(agent_id: str, session: ActivatedSession | ExtendedSession) -> None:
        log(agent_id, session)
        reasons.append(agent.replaced_because)

    agent = client.agent(agent_id, on_session=on_session)
    first = agent.remember("one")
    newer = client.activate(agent_id)  # another client takes over the agent
    assert newer.superseded_session_id == first.session_id

    second = agent.remember("two")
    assert second.session_id not in (first.session_id, newer.session_id)
    assert log.kinds == ["activated", "activated"]
    assert agent.session_id == second.session_id
    assert reasons == [None, "session_superseded"]
    assert agent.replaced_because == "session_superseded"
    with pytest.raises(AuthenticationError) as superseded:
        client.current(newer.session_token)
    assert superseded.value.code == "session_superseded"


def test_deleted_agent_comes_back_with_a_new_session(client: MemantoClient) -> None:
    agent_id = unique_agent("client-deleted")
    agent = client.agent(agent_id)
    first = agent.remember("one")
    client.delete_agent(agent_id)  # the token now answers session_ended
    second = agent.remember("two")
    assert second.session_id != first.session_id
    assert agent.replaced_because == "session_ended"
    assert [m.content for m in agent.list_memories().memories] == ["two"]


# ---------------------------------------------------------------------------------------
# Errors


def test_typed_errors_carry_the_problem(client: MemantoClient, server: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.get_agent(unique_agent("nobody"))
    error = missing.value
    assert error.status == 404
    assert error.code == "agent_not_found"
    assert "not found" in error.detail
    assert error.problem is not None
    assert error.problem["status"] == 404
    assert error.problem["type"].endswith("agent-not-found")
    assert error.request_id
    assert isinstance(error, MemantoError)

    with pytest.raises(ValidationError) as invalid:
        client.activate(unique_agent("client-invalid"), duration_hours=100)
    assert invalid.value.status == 422
    assert invalid.value.code == "validation_error"
    assert invalid.value.errors
    assert invalid.value.errors[0]["field"] == "duration_hours"

    agent = client.agent(unique_agent("client-invalid"))
    with pytest.raises(ValidationError) as bad_limit:
        agent.recall("anything", limit=1000)
    assert [e["field"] for e in bad_limit.value.errors] == ["limit"]

    with MemantoClient(server, "mk_not-a-real-key") as stranger, pytest.raises(AuthenticationError) as bad_key:
        stranger.list_agents()
    assert bad_key.value.status == 401
    assert bad_key.value.code == "invalid_api_key"

    with MemantoClient(server, "mk_not-a-real-key") as stranger:
        handle = stranger.agent(unique_agent("client-invalid"))
        with pytest.raises(AuthenticationError) as cannot_activate:
            handle.remember("never stored")
        assert cannot_activate.value.code == "invalid_api_key"

    # A token of one agent used on another: 403, not retried on a new session.
    first = client.activate(unique_agent("client-owner"))
    wrong = client.agent(unique_agent("client-owner"), token=first.session_token)
    with pytest.raises(PermissionDeniedError) as mismatch:
        wrong.remember("not mine")
    assert mismatch.value.code == "agent_mismatch"
    assert wrong.token == first.session_token


def test_api_key_from_the_environment(server: str, owner: OwnerKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMANTO_API_KEY", raising=False)
    monkeypatch.setenv("MOORCHEH_API_KEY", owner.key)
    with MemantoClient(server) as client:
        assert client.list_agents().count >= 0
    monkeypatch.setenv("MEMANTO_API_KEY", "mk_wrong")
    with MemantoClient(server) as client, pytest.raises(AuthenticationError):
        client.list_agents()
    with MemantoClient(server, owner.key) as client:  # an explicit key wins
        client.list_agents()
    monkeypatch.delenv("MEMANTO_API_KEY")
    monkeypatch.delenv("MOORCHEH_API_KEY")
    with MemantoClient(server) as client, pytest.raises(AuthenticationError) as missing:
        client.list_agents()
    assert missing.value.code == "missing_credentials"


def test_connection_failed_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with MemantoClient(url, "mk_x", max_retries=1) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError) as failed:
            client.list_agents()
        assert failed.value.status is None
        assert failed.value.code is None
        assert url in failed.value.detail
        assert isinstance(failed.value.cause, httpx.ConnectError)
        assert time.monotonic() - started < 5
        with pytest.raises(ConnectionFailedError):
            client.health()
        with pytest.raises(ConnectionFailedError):
            client.agent("nobody").remember("lost")


# ---------------------------------------------------------------------------------------
# Retries on real outages


def test_retries_honour_retry_after_and_remember_stores_once(server: str, owner: OwnerKey) -> None:
    agent_id = unique_agent("client-retry")
    # The first attempt reaches the server (which stores the memory) but its answer is
    # replaced by a 503; the second is refused outright; the third goes through.
    with (
        FlakyProxy(server, "/remember", ["forward-503", "503"]) as proxy,
        MemantoClient(proxy.url, owner.key) as client,
    ):
        agent = client.agent(agent_id)
        agent.ensure_session()
        started = time.monotonic()
        stored = agent.remember("stored exactly once")
        elapsed = time.monotonic() - started

        assert len(proxy.attempts) == 3
        assert elapsed >= 2.0
        gaps = [b[0] - a[0] for a, b in zip(proxy.attempts, proxy.attempts[1:], strict=False)]
        assert all(gap >= 1.0 for gap in gaps), gaps
        keys = {headers["idempotency-key"] for _, headers in proxy.attempts}
        assert len(keys) == 1
        assert len(keys.pop()) == 36  # a uuid4

        memories = agent.list_memories().memories
        assert [m.memory_id for m in memories] == [stored.memory_id]
        assert agent.current().memories_stored == 1


def test_retries_give_up_after_max_retries(server: str, owner: OwnerKey) -> None:
    with (
        FlakyProxy(server, "/recall", ["503", "503", "503"]) as proxy,
        MemantoClient(proxy.url, owner.key, max_retries=1) as client,
    ):
        agent = client.agent(unique_agent("client-retry"))
        with pytest.raises(ServiceUnavailableError) as unavailable:
            agent.recall("anything")
        assert unavailable.value.status == 503
        assert unavailable.value.code == "dependency_unavailable"
        assert unavailable.value.retry_after == 1
        assert len(proxy.attempts) == 2


def test_read_timeouts_are_retried_only_when_repeating_is_safe(server: str, owner: OwnerKey) -> None:
    agent_id = unique_agent("client-timeout")
    with MemantoClient(server, owner.key) as direct:
        token = direct.activate(agent_id).session_token

    # remember carries its Idempotency-Key: retried after the read timeout, stored once.
    with (
        FlakyProxy(server, "/remember", ["forward-slow"], slow_seconds=1.0) as proxy,
        MemantoClient(proxy.url, owner.key, timeout=0.4) as client,
    ):
        agent = client.agent(agent_id, token=token)
        stored = agent.remember("sent twice, stored once")
        assert len(proxy.attempts) == 2
        assert len({h["idempotency-key"] for _, h in proxy.attempts}) == 1
        assert [m.memory_id for m in agent.list_memories().memories] == [stored.memory_id]

    # A batch whose items all carry their own idempotency_key is safe to repeat too.
    with (
        FlakyProxy(server, "/batch-remember", ["forward-slow"], slow_seconds=1.0) as proxy,
        MemantoClient(proxy.url, owner.key, timeout=0.4) as client,
    ):
        agent = client.agent(agent_id, token=token)
        items = [{"content": f"imported {i}", "idempotency_key": f"import-{agent_id}-{i}"} for i in range(2)]
        batch = agent.batch_remember(items)
        assert len(proxy.attempts) == 2
        assert (batch.stored, batch.already_stored) == (0, 2)  # the first attempt stored them
        assert len(agent.list_memories().memories) == 3

    # A plain POST (here: extend) may have been carried out: not repeated after a read timeout.
    with (
        FlakyProxy(server, "/session/extend", ["forward-slow"], slow_seconds=1.0) as proxy,
        MemantoClient(proxy.url, owner.key, timeout=0.4) as client,
    ):
        with pytest.raises(ConnectionFailedError) as timed_out:
            client.extend(token, 1)
        assert isinstance(timed_out.value.cause, httpx.ReadTimeout)
        assert len(proxy.attempts) == 1
        assert client.current(token).extensions == 1  # the server did extend, once


def test_a_real_redis_outage_is_retried(settings: Settings, owner: OwnerKey) -> None:
    with private_redis() as redis_server:
        env = settings_env(msgspec.structs.replace(settings, redis_url=redis_server.url, retry_after_seconds=1))
        with running_server(env) as base_url, MemantoClient(base_url, owner.key, max_retries=4) as client:
            agent = client.agent(unique_agent("client-outage"))
            first = agent.remember("before the outage")
            assert client.health()["status"] == "ok"

            redis_server.stop()
            health = client.health()  # the JSON of the 503, not an exception
            assert health["status"] == "unavailable"
            assert health["checks"]["postgres"] == "ok"

            # Redis comes back (empty) while the client is waiting to retry; the session is
            # gone with it, so the client activates a new one and stores the memory.
            restart = threading.Timer(1.5, redis_server.start)
            restart.start()
            try:
                started = time.monotonic()
                second = agent.remember("during the outage")
                elapsed = time.monotonic() - started
            finally:
                restart.join()
            assert elapsed >= 1.5
            assert second.session_id != first.session_id
            contents = sorted(m.content for m in agent.list_memories().memories)
            assert contents == ["before the outage", "during the outage"]


# ---------------------------------------------------------------------------------------
# The async client


async def test_async_life_cycle(server: str, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    calls: list[tuple[str, str]] = []

    async def on_session(agent_id: str, session: ActivatedSession | ExtendedSession) -> None:
        await asyncio.sleep(0)
        calls.append((agent_id, type(session).__name__))

    agent_id = unique_agent("client-async")
    async with AsyncMemantoClient(server, owner.key) as client:
        assert (await client.health())["status"] == "ok"
        agent = client.agent(agent_id, on_session=on_session)
        assert isinstance(agent, AsyncAgentHandle)
        stored = await agent.remember("The deploy window is Tuesday morning", type="decision", title="Deploys")
        assert calls == [(agent_id, "ActivatedSession")]
        recalled = await agent.recall("deploy window", type=["decision", "fact"])
        assert [m.memory_id for m in recalled.memories] == [stored.memory_id]
        answered = await agent.answer("When is the deploy window?")
        assert "Tuesday" in answered.answer
        assert [m.memory_id async for m in agent.iter_memories()] == [stored.memory_id]
        current = await agent.current()
        assert current.memories_stored == 1
        extended = await agent.extend(1)
        assert extended.hours_added == 1
        assert calls[-1] == (agent_id, "ExtendedSession")
        assert (await client.current(agent.token or "")).extensions == 1
        ended = await agent.deactivate()
        assert ended.memories_stored == 1
        assert agent.token is None

        # Concurrent first calls on one handle share one activation.
        fresh = client.agent(unique_agent("client-async"), on_session=on_session)
        results = await asyncio.gather(*(fresh.remember(f"note {i}") for i in range(5)))
        assert len({r.session_id for r in results}) == 1
        assert calls.count((fresh.agent_id, "ActivatedSession")) == 1

        with pytest.raises(NotFoundError) as missing:
            await client.get_agent(unique_agent("nobody"))
        assert missing.value.code == "agent_not_found"

    rows = await db.fetchval(
        "SELECT count(*) FROM memories WHERE owner_id = $1::uuid AND agent_id = $2", owner.owner_id, agent_id
    )
    assert rows == 1


async def test_async_retries_and_reactivation(server: str, owner: OwnerKey) -> None:
    with FlakyProxy(server, "/remember", ["forward-503", "503"]) as proxy:
        async with AsyncMemantoClient(proxy.url, owner.key) as client:
            agent_id = unique_agent("client-async")
            agent = client.agent(agent_id)
            first = await agent.remember("one")  # forwarded, answered 503, replayed after 2 s
            assert len(proxy.attempts) == 3
            assert proxy.attempts[2][0] - proxy.attempts[0][0] >= 2.0
            assert len({h["idempotency-key"] for _, h in proxy.attempts}) == 1

            await client.activate(agent_id)  # supersedes the handle's session
            second = await agent.remember("two")
            assert second.session_id != first.session_id
            assert agent.replaced_because == "session_superseded"
            assert (await agent.current()).memories_stored == 1
            assert len((await agent.list_memories()).memories) == 2

    async with AsyncMemantoClient(f"http://127.0.0.1:{free_port()}", owner.key, max_retries=0) as dead:
        with pytest.raises(ConnectionFailedError):
            await dead.health()
