"""The documented agent workflow at scale: a Locust scenario (`FastHttpUser`).

    MEMANTO_API_KEY=mk_... make loadtest URL=http://127.0.0.1:8000 USERS=50 DURATION=60s

or directly:

    MEMANTO_API_KEY=mk_... locust -f bench/locustfile.py --headless --host URL -u 50 -r 10 \
        --run-time 60s --only-summary --csv bench/results/loadtest

Each simulated user is one agent process after another: it activates a session for an
agent of its own (short sessions, so that extending is exercised), then stores, recalls
and checks its session; whenever the session's expiry (`X-Session-Expires-At`, or
`GET /session/current`) is close, it extends it; every so often it deactivates and moves
on to a new agent (agents rotating). Every response is checked, so that a failure in the
summary means the service answered wrongly, not only that it was slow.

Environment:
    MEMANTO_API_KEY               the owner's API key (required)
    MEMANTO_LOADTEST_SESSION_HOURS  session length at activation, and per extension (default 0.01 h = 36 s)
    MEMANTO_LOADTEST_EXTEND_BELOW   extend when fewer seconds than this remain (default 30)
    MEMANTO_LOADTEST_ROTATE_AFTER   tasks per agent before it deactivates (default 60, about 12 s;
                                    so that with the defaults each agent extends about once)
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time
from datetime import datetime
from typing import Any

from locust import FastHttpUser, between, events, task

API = "/api/v2"
SESSION_HOURS = float(os.environ.get("MEMANTO_LOADTEST_SESSION_HOURS", "0.01"))
EXTEND_BELOW_S = float(os.environ.get("MEMANTO_LOADTEST_EXTEND_BELOW", "30"))
ROTATE_AFTER = int(os.environ.get("MEMANTO_LOADTEST_ROTATE_AFTER", "60"))
EXPIRES_HEADER = "X-Session-Expires-At"

TYPES = ["fact", "preference", "goal", "decision", "event", "instruction", "observation", "learning"]
WORDS = (
    "customer prefers dark mode billing invoice deadline friday release notes migration database "
    "deploy rollback staging production latency budget meeting agenda roadmap quarterly review "
    "python typescript kubernetes redis postgres cache token session agent memory summary"
).split()
RUN = secrets.token_hex(3)
_agent_numbers = itertools.count()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MEMANTO_API_KEY", ""),
        help="the owner's API key (default: $MEMANTO_API_KEY)",
        include_in_web_ui=False,
    )


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 18))) + "."


def _epoch(expires_at: str) -> float:
    return datetime.fromisoformat(expires_at).timestamp()


class Agent(FastHttpUser):
    """One agent at a time: activate, work, extend when low, deactivate, next agent."""

    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        key = self.environment.parsed_options.api_key if self.environment.parsed_options else ""
        key = key or os.environ.get("MEMANTO_API_KEY", "")
        if not key:
            raise RuntimeError("set MEMANTO_API_KEY (or --api-key) to an owner's API key")
        self.key_headers = {"Authorization": f"Bearer {key}"}
        self.rng = random.Random()
        self.token: str | None = None
        self.activate()

    def on_stop(self) -> None:
        if self.token is not None:
            self.deactivate()

    # --- the session -------------------------------------------------------------------

    def activate(self) -> None:
        self.agent_id = f"load-{RUN}-{next(_agent_numbers)}"
        self.tasks_done = 0
        self.token = None
        with self.client.post(
            f"{API}/agents/{self.agent_id}/activate",
            json={"duration_hours": SESSION_HOURS, "metadata": {"source": "locust"}},
            headers=self.key_headers,
            name="activate",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"activate: {response.status_code} {response.text[:200]}")
                return
            body = response.json()
            self.token = body["session_token"]
            self.expires = _epoch(body["expires_at"])

    def deactivate(self) -> None:
        with self.client.post(
            f"{API}/agents/{self.agent_id}/deactivate",
            headers={"X-Session-Token": self.token or ""},
            name="deactivate",
            catch_response=True,
        ) as response:
            if response.status_code != 200 or response.json().get("end_reason") != "deactivated":
                response.failure(f"deactivate: {response.status_code} {response.text[:200]}")
        self.token = None

    @property
    def token_headers(self) -> dict[str, str]:
        return {"X-Session-Token": self.token or ""}

    def _failed(self, response: Any, what: str) -> None:
        response.failure(f"{what}: {response.status_code} {response.text[:200]}")
        if 400 <= response.status_code < 500:  # the session is gone (expired, superseded): start over
            self.token = None

    def _track(self, response: Any) -> None:
        header = response.headers.get(EXPIRES_HEADER)
        if header:
            self.expires = _epoch(header)

    def _extend_if_low(self) -> None:
        if self.expires - time.time() > EXTEND_BELOW_S:
            return
        with self.client.post(
            f"{API}/session/extend",
            json={"extend_hours": SESSION_HOURS},
            headers=self.token_headers,
            name="extend",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                self._failed(response, "extend")
                return
            self.expires = _epoch(response.json()["expires_at"])

    def _before_task(self) -> bool:
        """Rotate to the next agent when this one has done its share; False when there is no session."""
        if self.token is not None and self.tasks_done >= ROTATE_AFTER:
            self.deactivate()
        if self.token is None:
            self.activate()
        if self.token is None:
            return False
        self.tasks_done += 1
        self._extend_if_low()
        return self.token is not None

    # --- the work ----------------------------------------------------------------------

    @task(5)
    def remember(self) -> None:
        if not self._before_task():
            return
        with self.client.post(
            f"{API}/agents/{self.agent_id}/remember",
            json={"content": _sentence(self.rng), "type": self.rng.choice(TYPES), "tags": ["load"]},
            headers=self.token_headers,
            name="remember",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                self._failed(response, "remember")
                return
            self._track(response)

    @task(3)
    def recall(self) -> None:
        if not self._before_task():
            return
        with self.client.post(
            f"{API}/agents/{self.agent_id}/recall",
            json={"query": " ".join(self.rng.sample(WORDS, 2)), "limit": 10},
            headers=self.token_headers,
            name="recall",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                self._failed(response, "recall")
                return
            self._track(response)

    @task(3)
    def current(self) -> None:
        if not self._before_task():
            return
        with self.client.get(
            f"{API}/session/current", headers=self.token_headers, name="session/current", catch_response=True
        ) as response:
            if response.status_code != 200 or response.json().get("agent_id") != self.agent_id:
                self._failed(response, "session/current")
                return
            self._track(response)
