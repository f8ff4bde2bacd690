"""HTTP pieces shared by the controllers."""

from __future__ import annotations

from typing import Annotated, TypeVar

from litestar import Response
from litestar.params import PathParameter

from app.agents.schemas import AGENT_ID_PATTERN
from app.sessions.store import LiveState
from app.timeutil import iso_z

T = TypeVar("T")

SESSION_EXPIRES_HEADER = "X-Session-Expires-At"

AgentIdPath = Annotated[
    str, PathParameter(pattern=AGENT_ID_PATTERN, description="Agent id: 1-64 of A-Z a-z 0-9 _ -")
]


def with_session_expiry(content: T, state: LiveState, status_code: int = 200) -> Response[T]:
    """A token route's answer: its body plus the session's live expiry."""
    return Response(content, status_code=status_code, headers={SESSION_EXPIRES_HEADER: iso_z(state.expires_ms)})


