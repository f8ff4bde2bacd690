"""Recording expired sessions in the history, exactly once, by whichever instance looks first.

A session expires in Redis by itself (its TTL). Every instance runs this sweeper: it
claims history rows whose recorded expiry has passed (`FOR UPDATE SKIP LOCKED`, so two
instances never take the same row), asks Redis what became of each, and records the
expired ones with their final counters, which Redis keeps for a retention window
after the expiry. A session that was extended meanwhile only gets its new expiry.

It also records what a request could not: a session deactivated while Postgres was
down (Redis keeps it as a tombstone, with its end and counters), and a session an
activation replaced without recording it (Redis keeps it beside the new session until
that one is first used).
"""

from __future__ import annotations

import asyncio
import logging
import random

from memanto_server.errors import OUTAGE_ERRORS, outage_backend
from memanto_server.lib.background import BackgroundLoop
from memanto_server.lib.db import Database
from memanto_server.lib.timeutil import from_ms, now_ms, to_ms
from memanto_server.ops.metrics import DEPENDENCY_ERRORS, SESSIONS_ENDED
from memanto_server.sessions.repository import Executor, SessionRepository
from memanto_server.sessions.store import EndRecord, LiveState, SessionStore

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
        """Record what has expired (or ended, if recording that failed); return how many sessions were recorded."""
        recorded = 0
        ended: list[str] = []  # reasons of what this sweep recorded, counted once committed
        async with self._db.transaction() as conn:
            for due in await self._repository.claim_due(conn, from_ms(now_ms()), BATCH):
                snapshot = await self._store.peek(due.owner_id, due.agent_id)
                if snapshot.live_session_id == due.session_id and snapshot.state is not None:
                    await self._repository.sync_expiry(
                        conn, due.owner_id, due.session_id, from_ms(snapshot.state.expires_ms)
                    )
                    continue
                known = snapshot.end_of(due.session_id)
                if known is None:
                    # Redis no longer has it (retention passed, or Redis lost its data):
                    # the counters cannot be known any more; the end can.
                    logger.warning("expired session %s recorded without its final counters", due.session_id)
                    known = EndRecord(
                        "expired", LiveState(due.session_id, 0, to_ms(due.expires_at), 0, 0, 0), to_ms(due.expires_at)
                    )
                # The session the kept one replaced, if its activation may not have recorded it.
                extra = [snapshot.predecessor] if snapshot.predecessor and snapshot.predecessor is not known else []
                for record in (known, *extra):
                    if await self._record(conn, due.owner_id, record):
                        ended.append(record.reason)
                recorded += 1
        for reason in ended:
            SESSIONS_ENDED.labels(reason).inc()
        return recorded

    async def _record(self, conn: Executor, owner_id: str, record: EndRecord) -> bool:
        state = record.state
        return await self._repository.end(
            owner_id,
            state.session_id,
            ended_at=from_ms(record.ended_ms),
            reason=record.reason,
            expires_at=from_ms(state.expires_ms),
            stored=state.stored,
            retrieved=state.retrieved,
            extensions=state.extensions,
            conn=conn,
        )

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
