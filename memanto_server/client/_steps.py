"""The steps an operation asks of its driver: the one place where the client meets I/O.

Every operation of the client is a generator that *yields steps* and receives their outcomes:

- `Send`   → the driver performs the HTTP request and sends back the `httpx.Response`,
             or the `httpx.TransportError` it raised;
- `Sleep`  → the driver waits that many seconds (`time.sleep` / `asyncio.sleep`);
- `Lock`, `Unlock` → the driver takes / gives back the handle's session lock, so that
             concurrent calls on one handle do not each activate a session;
- `Notify` → the driver calls the handle's `on_session` callback (awaiting it if needed).

The operation's return value is the decoded result; errors are raised from inside it.
`MemantoClient` and `AsyncMemantoClient` are two small drivers of these generators, so the
request building, response decoding, retry policy and session upkeep exist once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from memanto_server.sessions.schemas import ActivatedSession, ExtendedSession

T = TypeVar("T")

SessionInfo = ActivatedSession | ExtendedSession
OnSession = Callable[[str, SessionInfo], Any]


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
