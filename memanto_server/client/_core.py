"""The client's one implementation, free of I/O, put together for a driver.

`Transport` (`_transport.py`) sends a request until it has a final answer; `Routes`
(`_routes.py`) are the API key's routes; `SessionUpkeep` (`_sessions.py`) keeps a handle's
session alive; `AgentRoutes` (`_agent_routes.py`) are the handle's routes on that session.
Each of their operations is a generator of the steps in `_steps.py`, which the sync and the
async driver carry out, so both clients behave the same.
"""

from __future__ import annotations

import os

from memanto_server.client._agent_routes import AgentRoutes
from memanto_server.client._routes import Routes
from memanto_server.client._sessions import SessionUpkeep
from memanto_server.client._transport import Transport
from memanto_server.client._wire import normalize_base_url

API_KEY_ENV = ("MEMANTO_API_KEY", "MOORCHEH_API_KEY")


def resolve_api_key(api_key: str | None) -> str | None:
    """The given key, else `MEMANTO_API_KEY`, else `MOORCHEH_API_KEY` (empty values skipped)."""
    if api_key:
        return api_key
    for name in API_KEY_ENV:
        if value := os.environ.get(name, "").strip():
            return value
    return None


class ClientCore:
    """The parts a driver hands its operations to: `routes` and, for handles, `upkeep` and `agents`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        max_retries: int,
        renew_threshold_minutes: float,
        default_hours: float | None,
    ) -> None:
        self.transport = Transport(normalize_base_url(base_url), resolve_api_key(api_key), max_retries=max_retries)
        self.routes = Routes(self.transport)
        self.upkeep = SessionUpkeep(
            self.transport,
            self.routes,
            renew_threshold_minutes=renew_threshold_minutes,
            default_hours=default_hours,
        )
        self.agents = AgentRoutes(self.routes, self.upkeep)

    @property
    def base_url(self) -> str:
        return self.transport.base_url
