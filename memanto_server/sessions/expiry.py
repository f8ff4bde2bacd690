"""Recording expired sessions in the history, exactly once, by whichever instance looks first.

A session expires in Redis by itself (its TTL). Every instance runs this sweeper: it
claims history rows whose recorded expiry has passed (`FOR UPDATE SKIP LOCKED`, so two
instances never take the same row), asks Redis what became of each, and records the
expired ones with their final counters, which Redis keeps for a retention window
after the expiry. A session that was extended meanwhile only gets its new expiry.
"""

from __future__ import annotations

import asyncio
import logging
import random

from memanto_server.errors import OUTAGE_ERRORS, outage_backend
from memanto_server.lib.background import BackgroundLoop
from memanto_server.lib.db import Database
from memanto_server.lib.timeutil import from_ms, now_ms
from memanto_server.ops.metrics import DEPENDENCY_ERRORS, SESSIONS_ENDED
from memanto_server.sessions.repository import SessionRepository
from memanto_server.sessions.store import SessionStore

logger = logging.getLogger("memanto.sessions.expiry")

BATCH = 200


class ExpirySweeper:
    def __init__(self, db: Database, repository: SessionRepository, store: SessionStore, interval: float) -> None:
        self._db = db
        self._repository = repository
        self._store = store
        self._interval = interval
        self._loop = BackgroundLoop("session-expiry-sweeper", self._run)

    async def sweep_once(self) -> int:
        """Record what has expired; return how many sessions were recorded."""
        recorded = ended = 0
        async with self._db.transaction() as conn:
            for due in await self._repository.claim_due(conn, from_ms(now_ms()), BATCH):
                snapshot = await self._store.peek(due.owner_id, due.agent_id)
                state = snapshot.state if snapshot.state and snapshot.state.session_id == due.session_id else None
                if snapshot.live_session_id == due.session_id and state is not None:
                    await self._repository.sync_expiry(conn, due.owner_id, due.session_id, from_ms(state.expires_ms))
                    continue
                if state is None:
                    # Redis no longer has it (retention passed, or Redis lost its data):
                    # the counters cannot be known any more; the end can.
                    logger.warning("expired session %s recorded without its final counters", due.session_id)
                ended += await self._repository.end(
                    due.owner_id,
                    due.session_id,
                    ended_at=from_ms(state.expires_ms) if state else due.expires_at,
                    reason="expired",
                    expires_at=from_ms(state.expires_ms) if state else due.expires_at,
                    stored=state.stored if state else 0,
                    retrieved=state.retrieved if state else 0,
                    extensions=state.extensions if state else 0,
                    conn=conn,
                )
                recorded += 1
        SESSIONS_ENDED.labels("expired").inc(ended)  # once committed
        return recorded

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self, loop: BackgroundLoop) -> None:
        while loop.running:
            # Jitter spreads the instances' sweeps instead of lining them up.
            await asyncio.sleep(self._interval * random.uniform(0.5, 1.0))
            try:
                while await self.sweep_once() >= BATCH and loop.running:
                    pass
            except asyncio.CancelledError:
                raise
            except OUTAGE_ERRORS as exc:
                DEPENDENCY_ERRORS.labels(outage_backend(exc)).inc()
                logger.warning("expiry sweep skipped: %s", type(exc).__name__)
            except Exception:
                logger.exception("expiry sweep failed")
