"""Memories with embeddings of the test's choosing, written straight to Postgres."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

DIMENSION = 384


def unit(seed: int, dimension: int = DIMENSION) -> np.ndarray:
    """A random unit vector, the same for the same seed."""
    vector = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, closeness: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine similarity to `vector` (a unit vector) is exactly `closeness`."""
    noise = unit(1_000_003 + seed, len(vector))  # never the seed of `vector` itself
    noise -= float(noise @ vector) * vector
    noise /= np.linalg.norm(noise)
    return (closeness * vector + np.sqrt(1 - closeness**2) * noise).astype(np.float32)


async def ensure_agent(conn: asyncpg.Connection[Any], owner_id: str, agent_id: str) -> None:
    await conn.execute(
        "INSERT INTO agents (owner_id, agent_id) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING", owner_id, agent_id
    )


async def insert_memory(
    conn: asyncpg.Connection[Any],
    owner_id: str,
    agent_id: str,
    content: str,
    embedding: np.ndarray | None = None,
    *,
    type: str = "fact",
    tags: list[str] | None = None,
    title: str | None = None,
    created_at: datetime | None = None,
) -> UUID:
    """One memory, with `embedding` stored as if the worker had made it (None: not embedded yet)."""
    await ensure_agent(conn, owner_id, agent_id)
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        INSERT INTO memories (owner_id, agent_id, session_id, type, title, content, tags, embedding, created_at)
        VALUES ($1::uuid, $2, 'test-session', $3, $4, $5, $6, $7::real[]::vector, coalesce($8, now()))
        RETURNING memory_id
        """,
        owner_id,
        agent_id,
        type,
        title,
        content,
        tags or [],
        None if embedding is None else embedding.tolist(),
        created_at,
    )


async def record_model(conn: asyncpg.Connection[Any], model_id: str, dimension: int = DIMENSION) -> None:
    await conn.execute(
        """
        INSERT INTO embedding_model (model_id, dimension, complete) VALUES ($1, $2, true)
        ON CONFLICT (singleton) DO UPDATE SET model_id = excluded.model_id, dimension = excluded.dimension
        """,
        model_id,
        dimension,
    )
