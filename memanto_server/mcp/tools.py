"""The MCP tools: the names of the published MEMANTO MCP server, each a call of the REST services.

Every tool takes the owner's API key (the `/mcp` endpoint's credential) and names its agent.
Memory tools run in the agent's live session and activate one only when none is live
(`KeyedSessions`), so they never supersede a session another client holds; `activate` starts a
new session as the REST route does. Nothing here decides anything the services do not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec

from memanto_server.agents.schemas import AgentId, CreateAgentRequest
from memanto_server.auth.cache import Owner
from memanto_server.limits import Hours
from memanto_server.memories.schemas import (
    AnswerRequest,
    AsOfRequest,
    BatchRememberRequest,
    ChangedSinceRequest,
    RecallRequest,
    RecentRequest,
    RememberRequest,
)
from memanto_server.services import Services
from memanto_server.sessions.schemas import ActivateRequest
from memanto_server.sessions.tokens import SessionClaims

# How a session that a tool activates is marked in the session history.
CLIENT = "mcp"
# Where the `/mcp` route's guard leaves the request's owner in the ASGI scope's state.
OWNER_STATE = "memanto_mcp_owner"

Result = msgspec.Struct | dict[str, Any]
Handler = Callable[[Services, Owner, Any], Awaitable[Result]]


class AgentArgs(msgspec.Struct, kw_only=True):
    agent_id: AgentId


class ListAgentsArgs(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class ActivateArgs(ActivateRequest, kw_only=True):
    agent_id: AgentId


class ExtendArgs(msgspec.Struct, kw_only=True):
    agent_id: AgentId
    extend_hours: Hours


class RememberArgs(RememberRequest, kw_only=True):
    agent_id: AgentId


class BatchRememberArgs(BatchRememberRequest, kw_only=True):
    agent_id: AgentId


class RecallArgs(RecallRequest, kw_only=True):
    agent_id: AgentId


class RecentArgs(RecentRequest, kw_only=True):
    agent_id: AgentId


class AsOfArgs(AsOfRequest, kw_only=True):
    agent_id: AgentId


class ChangedSinceArgs(ChangedSinceRequest, kw_only=True):
    agent_id: AgentId


class AnswerArgs(AnswerRequest, kw_only=True):
    agent_id: AgentId


# --------------------------------------------------------------------------- handlers


async def _create_agent(services: Services, owner: Owner, args: CreateAgentRequest) -> Result:
    return await services.agents.create(owner, args.agent_id, args.description)


async def _list_agents(services: Services, owner: Owner, args: ListAgentsArgs) -> Result:
    return await services.agents.list(owner, args.limit, args.cursor)


async def _get_agent(services: Services, owner: Owner, args: AgentArgs) -> Result:
    return await services.agents.get(owner, args.agent_id)


async def _delete_agent(services: Services, owner: Owner, args: AgentArgs) -> Result:
    await services.agents.delete(owner, args.agent_id)
    return {"agent_id": args.agent_id, "deleted": True}


async def _activate(services: Services, owner: Owner, args: ActivateArgs) -> Result:
    activated = await services.sessions.activate(owner, args.agent_id, args.duration_hours, args.metadata)
    # The tools run on the API key; the session token would only be a secret in a model's context.
    answer = msgspec.to_builtins(activated)
    answer.pop("session_token", None)
    return answer  # type: ignore[no-any-return]


async def _session_info(services: Services, owner: Owner, args: AgentArgs) -> Result:
    claims = await services.keyed.live_claims(owner, args.agent_id)
    return await services.sessions.current(claims)


async def _extend(services: Services, owner: Owner, args: ExtendArgs) -> Result:
    claims = await services.keyed.live_claims(owner, args.agent_id)
    extended, _ = await services.sessions.extend(claims, args.extend_hours, "extend_hours")
    return extended


async def _deactivate(services: Services, owner: Owner, args: AgentArgs) -> Result:
    return await services.sessions.deactivate(owner, args.agent_id, None)


async def _remember(services: Services, owner: Owner, args: RememberArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.memories.remember(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _batch_remember(services: Services, owner: Owner, args: BatchRememberArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.memories.remember_batch(claims, args.memories))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _recall(services: Services, owner: Owner, args: RecallArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.memories.recall(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _recall_recent(services: Services, owner: Owner, args: RecentArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.lifecycle.recent(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _recall_as_of(services: Services, owner: Owner, args: AsOfArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.lifecycle.as_of(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _recall_changed_since(services: Services, owner: Owner, args: ChangedSinceArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.lifecycle.changed_since(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


async def _answer(services: Services, owner: Owner, args: AnswerArgs) -> Result:
    async def call(claims: SessionClaims) -> Result:
        return (await services.memories.answer(claims, args))[0]

    return await services.keyed.run(owner, args.agent_id, CLIENT, call)


# --------------------------------------------------------------------------- the table


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    title: str
    description: str
    arguments: type[msgspec.Struct]
    fields: dict[str, str]  # a description of each argument, for the model
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


AGENT = "The agent's id: 1-64 of A-Z a-z 0-9 _ -."
TYPES = (
    "Memory type: fact, preference, goal, decision, artifact, learning, event, instruction, relationship, "
    "context, observation, commitment or error."
)
FILTERS = {
    "agent_id": AGENT,
    "limit": "How many memories to return (1-100, default 10).",
    "type": "Only memories of this type, or of any of these types.",
    "tags": "Only memories that carry every one of these tags.",
    "created_after": "Only memories stored after this ISO-8601 time.",
    "created_before": "Only memories stored before this ISO-8601 time.",
    "cursor": "The next_cursor of the previous page, with the same other arguments.",
}
MEMORY_FIELDS = {
    "content": "What to remember, in plain language (1-10,000 characters).",
    "type": TYPES + " Default fact.",
    "title": "A short title (at most 100 characters); it weighs more than the content in recall.",
    "tags": "Up to 20 labels, each 1-64 characters.",
    "confidence": "How sure the agent is, 0 to 1 (default 0.8).",
    "source": "Where the memory comes from (at most 200 characters).",
    "metadata": "Any JSON object (at most 4 KB).",
    "idempotency_key": "A key for this memory: a repeated call with the same key stores nothing new.",
    "occurred_at": "The ISO-8601 time the memory is about (default: now), e.g. for history from another system.",
    "valid_until": "An ISO-8601 time after which the memory no longer holds (it is then left out of recall).",
}

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="remember",
        title="Remember",
        description=(
            "Store one memory for an agent: a fact, preference, decision or anything worth recalling in a later "
            "conversation. Runs in the agent's live session (activating one if none is live). Returns its memory_id."
        ),
        arguments=RememberArgs,
        fields={"agent_id": AGENT, **MEMORY_FIELDS},
        handler=_remember,
    ),
    ToolSpec(
        name="batch_remember",
        title="Remember many",
        description=(
            "Store 1-100 memories for an agent at once, all or nothing (for example when importing history; "
            "give each item its occurred_at to keep its date). Returns one memory_id per item, in order."
        ),
        arguments=BatchRememberArgs,
        fields={"agent_id": AGENT, "memories": "The memories: objects with the fields of remember (content required)."},
        handler=_batch_remember,
    ),
    ToolSpec(
        name="recall",
        title="Recall",
        description=(
            "Search an agent's memories from every session by words and by meaning, best match first; each result "
            "has a score from 0 to 1 (0.6 and above: a strong match; below 0.2: incidental) and the signals that "
            "matched. Expired memories are left out unless include_expired is true. Pass next_cursor back as cursor "
            "for the next page."
        ),
        arguments=RecallArgs,
        fields={
            **FILTERS,
            "query": "What to look for, in plain words (1-1,000 characters).",
            "min_score": "Only matches scoring at least this (0 to 1).",
            "min_similarity": "Same as min_score (MEMANTO's name).",
            "include_expired": "Also return expired memories.",
            "mode": "hybrid (words and meaning, the default), text (words only) or semantic (meaning only).",
        },
        handler=_recall,
        read_only=True,
    ),
    ToolSpec(
        name="recall_recent",
        title="Recall recent",
        description="The memories an agent stored most recently, newest first, with the recall filters and pages.",
        arguments=RecentArgs,
        fields={**FILTERS, "include_expired": "Also return expired memories."},
        handler=_recall_recent,
        read_only=True,
    ),
    ToolSpec(
        name="recall_as_of",
        title="Recall as of a time",
        description=(
            "What an agent knew at a point in time: its memories that had occurred by then and were not yet "
            "expired then, the latest first."
        ),
        arguments=AsOfArgs,
        fields={**FILTERS, "as_of": "The ISO-8601 time to look back at, e.g. 2025-11-01T00:00:00Z."},
        handler=_recall_as_of,
        read_only=True,
    ),
    ToolSpec(
        name="recall_changed_since",
        title="Recall what changed",
        description=(
            "An agent's memories created, changed, expired or restored after a time, the latest change first; "
            "each says its change_type (created, updated or expired)."
        ),
        arguments=ChangedSinceArgs,
        fields={**FILTERS, "since": "The ISO-8601 time after which changes count."},
        handler=_recall_changed_since,
        read_only=True,
    ),
    ToolSpec(
        name="answer",
        title="Answer",
        description=(
            "Answer a question from an agent's own memories: the sentences that answer it, with the memories "
            "they come from as sources, and a confidence from 0 to 1; when no memory answers, the answer says so."
        ),
        arguments=AnswerArgs,
        fields={
            "agent_id": AGENT,
            "question": "The question (1-1,000 characters).",
            "limit": "How many memories to draw on (1-20, default 5).",
            "include_expired": "Also draw on expired memories.",
        },
        handler=_answer,
        read_only=True,
    ),
    ToolSpec(
        name="create_agent",
        title="Create agent",
        description="Create an agent, which then holds its own memories and sessions. Fails if it exists.",
        arguments=CreateAgentRequest,
        fields={"agent_id": AGENT, "description": "What the agent is for (at most 1,000 characters)."},
        handler=_create_agent,
    ),
    ToolSpec(
        name="list_agents",
        title="List agents",
        description="The agents of this API key's owner, by agent_id, a page at a time.",
        arguments=ListAgentsArgs,
        fields={"limit": "How many agents (1-100, default 50).", "cursor": "The next_cursor of the previous page."},
        handler=_list_agents,
        read_only=True,
    ),
    ToolSpec(
        name="get_agent",
        title="Get agent",
        description="One agent: its description, how many memories and sessions it has, and its live session.",
        arguments=AgentArgs,
        fields={"agent_id": AGENT},
        handler=_get_agent,
        read_only=True,
    ),
    ToolSpec(
        name="delete_agent",
        title="Delete agent",
        description="Delete an agent for good: its session ends and its memories and history are deleted.",
        arguments=AgentArgs,
        fields={"agent_id": AGENT},
        handler=_delete_agent,
        destructive=True,
    ),
    ToolSpec(
        name="activate",
        title="Activate session",
        description=(
            "Start a new session for an agent (creating the agent if needed). A live session of the agent, "
            "whoever holds it, ends. Memory tools activate one by themselves when none is live."
        ),
        arguments=ActivateArgs,
        fields={
            "agent_id": AGENT,
            "duration_hours": "How long the session lasts, in hours (more than 0, at most 24; default 6).",
            "metadata": "Any JSON object to keep with the session (at most 4 KB).",
        },
        handler=_activate,
    ),
    ToolSpec(
        name="session_info",
        title="Session info",
        description="The agent's live session: when it started and expires, time left, memories stored and retrieved.",
        arguments=AgentArgs,
        fields={"agent_id": AGENT},
        handler=_session_info,
        read_only=True,
    ),
    ToolSpec(
        name="extend",
        title="Extend session",
        description="Push the expiry of the agent's live session back by some hours.",
        arguments=ExtendArgs,
        fields={"agent_id": AGENT, "extend_hours": "Hours to add (more than 0, at most 24)."},
        handler=_extend,
    ),
    ToolSpec(
        name="deactivate",
        title="Deactivate session",
        description="End the agent's live session; returns its summary (duration, memories stored and retrieved).",
        arguments=AgentArgs,
        fields={"agent_id": AGENT},
        handler=_deactivate,
    ),
)
