"""The routes of the API key and of explicit session tokens, one operation each (api.md)."""

from __future__ import annotations

from typing import Any

import msgspec

from memanto_server.agents.schemas import AgentDetail, AgentList, AgentSummary
from memanto_server.client._steps import Op
from memanto_server.client._transport import Retry, Transport
from memanto_server.client._wire import drop_none, segment
from memanto_server.client.errors import MemantoError
from memanto_server.sessions.schemas import (
    ActivatedSession,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    SessionHistory,
)


class Routes:
    """Health, agents and sessions by API key; `current`/`extend` with a token the caller holds."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def health(self) -> Op[dict[str, Any]]:
        response = yield from self.transport.exchange(
            "GET", "/health/ready", accept=frozenset({503}), max_retries=0, api=False
        )
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
        body = drop_none({"agent_id": agent_id, "description": description})
        return self.transport.call(AgentSummary, "POST", "/agents", body=body, retry=Retry.UNSAFE)

    def list_agents(self, limit: int = 50, cursor: str | None = None) -> Op[AgentList]:
        return self.transport.call(AgentList, "GET", "/agents", params=[("limit", limit), ("cursor", cursor)])

    def get_agent(self, agent_id: str) -> Op[AgentDetail]:
        return self.transport.call(AgentDetail, "GET", f"/agents/{segment(agent_id)}")

    def delete_agent(self, agent_id: str) -> Op[None]:
        return self.transport.call_empty("DELETE", f"/agents/{segment(agent_id)}")

    def agent_sessions(self, agent_id: str, limit: int = 20, cursor: str | None = None) -> Op[SessionHistory]:
        return self.transport.call(
            SessionHistory,
            "GET",
            f"/agents/{segment(agent_id)}/sessions",
            params=[("limit", limit), ("cursor", cursor)],
        )

    def activate(self, agent_id: str, duration_hours: float | None = None) -> Op[ActivatedSession]:
        body = {"duration_hours": duration_hours} if duration_hours is not None else None
        return self.transport.call(
            ActivatedSession, "POST", f"/agents/{segment(agent_id)}/activate", body=body, retry=Retry.UNSAFE
        )

    def current(self, token: str) -> Op[CurrentSession]:
        return self.transport.call(CurrentSession, "GET", "/session/current", token=token)

    def extend(self, token: str, hours: float) -> Op[ExtendedSession]:
        return self.transport.call(
            ExtendedSession, "POST", "/session/extend", body={"extend_hours": hours}, token=token, retry=Retry.UNSAFE
        )

    def deactivate(self, agent_id: str, token: str | None = None) -> Op[EndedSession]:
        return self.transport.call(
            EndedSession, "POST", f"/agents/{segment(agent_id)}/deactivate", token=token, retry=Retry.UNSAFE
        )
