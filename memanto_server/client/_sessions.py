"""Session upkeep of an agent handle: activate when there is none, extend before the end,
and replace a session the server says is gone, saying why."""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from memanto_server.client._routes import Routes
from memanto_server.client._steps import Lock, Notify, OnSession, Op, T, Unlock
from memanto_server.client._transport import Transport, decode
from memanto_server.client._wire import parse_time
from memanto_server.client.errors import AuthenticationError, ValidationError
from memanto_server.sessions.schemas import ActivatedSession, CurrentSession

SESSION_EXPIRES_HEADER = "X-Session-Expires-At"
SERVER_DEFAULT_HOURS = 6.0  # what the server uses when activation or renewal names no duration
# 401 codes after which a fresh session (one activation) may succeed where the old one failed.
SESSION_GONE_CODES = frozenset({"session_expired", "session_ended", "session_superseded", "invalid_token"})
# Why a handle replaced its session, besides the server's codes above: the handle saw the
# expiry pass by its own clock (said as the server says it), or the server refused to
# extend the session any further (its longest lifetime is used up).
SESSION_EXPIRED = "session_expired"
EXTENSION_REFUSED = "extension_refused"


def token_session_id(token: str) -> str | None:
    """The `session_id` claim of a session token, read without verifying it (the server does)."""
    try:
        payload = token.split(".")[1]
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, msgspec.DecodeError):
        return None
    session_id = claims.get("session_id") if isinstance(claims, dict) else None
    return session_id if isinstance(session_id, str) else None


class SessionState:
    """What a handle knows about its agent's session; only the upkeep and the handle's routes change it."""

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
        self.replaced_because: str | None = None

    def observe(self, token: str | None, response: httpx.Response) -> None:
        """Take the live expiry from a response to a request made with `token`."""
        if token is None or token != self.token:
            return  # an answer to an older session's request says nothing about this one
        expires = parse_time(response.headers.get(SESSION_EXPIRES_HEADER))
        if expires is not None:
            self.expires_at = expires

    def adopt(self, activated: ActivatedSession, replaced_because: str | None) -> None:
        self.token = activated.session_token
        self.session_id = activated.session_id
        self.expires_at = parse_time(activated.expires_at)
        self.replaced_because = replaced_because

    def clear(self) -> None:
        self.token = None
        self.session_id = None
        self.expires_at = None
        self.replaced_because = None


class HandleView:
    """What a handle (sync or async) shows of its session."""

    _state: SessionState

    @property
    def agent_id(self) -> str:
        return self._state.agent_id

    @property
    def token(self) -> str | None:
        return self._state.token

    @property
    def session_id(self) -> str | None:
        return self._state.session_id

    @property
    def expires_at(self) -> datetime | None:
        return self._state.expires_at

    @property
    def replaced_because(self) -> str | None:
        """Why the handle's session replaced the one before it: the server's code for the old
        one (`session_expired`, `session_ended`, `session_superseded`, `invalid_token`),
        `session_expired` also when the handle saw the expiry pass by itself, or
        `extension_refused` when the old one could not be extended any more. None for a
        handle's first session (and the first after `deactivate()`). Set before `on_session`
        is called, so the callback can say why."""
        return self._state.replaced_because


class SessionUpkeep:
    """A live session for every call of a handle, and one retry on a new session when it is gone."""

    def __init__(
        self,
        transport: Transport,
        routes: Routes,
        *,
        renew_threshold_minutes: float,
        default_hours: float | None,
    ) -> None:
        if default_hours is not None and default_hours <= 0:
            raise ValueError("default_hours must be more than 0")
        self.transport = transport
        self.routes = routes
        self.renew_threshold = timedelta(minutes=renew_threshold_minutes)
        self.default_hours = default_hours

    def activate_for(self, st: SessionState, replaced_because: str | None) -> Op[ActivatedSession]:
        """A new session for the handle (the caller holds the session lock)."""
        activated = yield from self.routes.activate(st.agent_id, self.default_hours)
        st.adopt(activated, replaced_because)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, activated)
        return activated

    def _renew(self, st: SessionState, token: str) -> Op[None]:
        """Extend the handle's session, or start a new one when it cannot be extended."""
        try:
            extended = yield from self.routes.extend(token, self.default_hours or SERVER_DEFAULT_HOURS)
        except ValidationError:
            # Over the session's longest lifetime (or an extension the server refuses).
            yield from self.activate_for(st, EXTENSION_REFUSED)
            return
        except AuthenticationError as exc:
            if exc.code not in SESSION_GONE_CODES:
                raise
            yield from self.activate_for(st, exc.code)
            return
        if st.token == token:
            st.expires_at = parse_time(extended.expires_at)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, extended)

    def _learn_expiry(self, st: SessionState, token: str) -> Op[None]:
        """Ask the server when the handle's session ends (a new session when it is gone)."""
        try:
            response = yield from self.transport.exchange(
                "GET", "/session/current", token=token, observe=functools.partial(st.observe, token)
            )
        except AuthenticationError as exc:
            if exc.code not in SESSION_GONE_CODES:
                raise
            yield from self.activate_for(st, exc.code)
            return
        info = decode(response, CurrentSession)
        st.session_id = info.session_id
        st.expires_at = st.expires_at or parse_time(info.expires_at)

    def _keep_alive(self, st: SessionState, token: str) -> Op[None]:
        """Extend the session when less than the threshold is left; replace it when it is past."""
        if st.expires_at is None:
            yield from self._learn_expiry(st, token)
        if st.token != token or st.expires_at is None:
            return
        left = st.expires_at - datetime.now(UTC)
        if left <= timedelta(0):
            yield from self.activate_for(st, SESSION_EXPIRED)
        elif left < self.renew_threshold:
            yield from self._renew(st, token)

    def prepare(self, st: SessionState, *, renew: bool = True) -> Op[str]:
        """A live session for the handle: activate when it has none; with `renew`, learn its
        expiry when unknown and extend it when less than the threshold is left."""
        yield Lock()
        if st.token is None:
            yield from self.activate_for(st, None)
        elif renew:
            yield from self._keep_alive(st, st.token)
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
                response = yield from self.transport.exchange(
                    method, path, token=token, observe=functools.partial(st.observe, token), **options
                )
            except AuthenticationError as exc:
                if attempt or exc.code not in SESSION_GONE_CODES:
                    raise
                yield Lock()
                if st.token == token:  # not already replaced by a concurrent call
                    yield from self.activate_for(st, exc.code)
                yield Unlock()
                continue
            return None if type_ is None else decode(response, type_)  # type: ignore[return-value]
        raise AssertionError("unreachable")  # pragma: no cover
