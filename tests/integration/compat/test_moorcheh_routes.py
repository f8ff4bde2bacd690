"""The Moorcheh v1 routes under `/moorcheh/v1`, spoken to as `moorcheh-sdk` 1.3.7 speaks (its paths,
bodies and `x-api-key`), against the real app, Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.owners import OwnerKey, unique_agent

V1 = "/moorcheh/v1"


def key(owner: OwnerKey) -> dict[str, str]:
    return {"x-api-key": owner.key}


def card(memory_type: str, title: str, content: str, tags: list[str] | None = None) -> str:
    """The text memanto 0.2.30 uploads for a memory (`MemoryRecord.to_moorcheh_document`)."""
    text = f"[{memory_type.upper()}] {title}\n\n{content}"
    return f"{text}\n\nTags: {', '.join(tags)}" if tags else text


def document(doc_id: str, memory_type: str, title: str, content: str, **fields: Any) -> dict[str, Any]:
    tags = fields.pop("tags", None)
    body = {
        "id": doc_id,
        "text": card(memory_type, title, content, tags),
        "memory_type": memory_type,
        "agent_id": "ignored",
        "actor_id": "agent-1",
        "source": "user",
        "confidence": 0.8,
        "status": "active",
        "provenance": "explicit_statement",
        "created_at": "2026-01-05T10:00:00+00:00",
        "updated_at": "2026-01-05T10:00:00+00:00",
        **fields,
    }
    if tags:
        body["tags"] = ",".join(tags)
    return body


async def namespace(client: Any, owner: OwnerKey, agent_id: str | None = None) -> str:
    name = f"memanto_agent_{agent_id or unique_agent('ns')}"
    response = await client.post(
        f"{V1}/namespaces", json={"namespace_name": name, "type": "text", "vector_dimension": None}, headers=key(owner)
    )
    assert response.status_code == 201, response.text
    return name


async def upload(client: Any, owner: OwnerKey, name: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post(f"{V1}/namespaces/{name}/documents", json={"documents": documents}, headers=key(owner))
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def search(client: Any, owner: OwnerKey, names: list[str], query: str, **body: Any) -> list[dict[str, Any]]:
    response = await client.post(
        f"{V1}/search",
        json={"namespaces": names, "query": query, "top_k": 10, "kiosk_mode": False, **body},
        headers=key(owner),
    )
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["execution_time"], float)
    return response.json()["results"]  # type: ignore[no-any-return]


async def stored(db: asyncpg.Connection[Any], owner: OwnerKey, name: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM memories WHERE owner_id = $1 AND agent_id = $2 ORDER BY created_at, memory_id",
        uuid.UUID(owner.owner_id),
        name.removeprefix("memanto_agent_"),
    )


# --------------------------------------------------------------------------- namespaces


async def test_a_namespace_is_an_agent_of_the_keys_owner(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent("ns")
    name = await namespace(client, owner, agent)
    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.status_code == 200, shown.text
    again = await client.post(f"{V1}/namespaces", json={"namespace_name": name, "type": "text"}, headers=key(owner))
    assert_problem(again, 409, "agent_exists")  # memanto tolerates "already exists"
    deleted = await client.delete(f"{V1}/namespaces/{name}", headers=key(owner))
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["namespace_name"] == name
    assert_problem(await client.get(f"{API}/agents/{agent}", headers=owner.headers), 404, "agent_not_found")
    assert_problem(await client.delete(f"{V1}/namespaces/{name}", headers=key(owner)), 404, "agent_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"namespace_name": "support-bot", "type": "text"}, "namespace_name"),
        ({"namespace_name": "memanto_agent_has space", "type": "text"}, "namespace_name"),
        ({"namespace_name": "memanto_agent_vectors", "type": "vector", "vector_dimension": 8}, "type"),
        ({"namespace_name": "memanto_agent_x", "type": "table"}, "type"),
    ],
)
async def test_a_namespace_that_is_no_memanto_agent_is_422(
    client: Any, owner: OwnerKey, body: dict[str, Any], field: str
) -> None:
    response = await client.post(f"{V1}/namespaces", json=body, headers=key(owner))
    assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == field


async def test_the_key_is_required_and_must_be_valid(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    for headers, code in (({}, "missing_credentials"), ({"x-api-key": "mk_wrong"}, "invalid_api_key")):
        assert_problem(
            await client.post(f"{V1}/search", json={"namespaces": [name], "query": "x"}, headers=headers), 401, code
        )
        assert_problem(await client.delete(f"{V1}/namespaces/{name}", headers=headers), 401, code)
    bearer = await client.post(f"{V1}/search", json={"namespaces": [name], "query": "x"}, headers=owner.headers)
    assert bearer.status_code == 200, bearer.text


# --------------------------------------------------------------------------- documents


async def test_documents_are_stored_as_memories_and_read_back_as_sent(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    name = await namespace(client, owner)
    long_content = "The customer asked twice about invoices sent to the old address in Lyon last spring."
    docs = [
        document("mem-1", "preference", "Contact by email", "The customer prefers email over phone.", tags=["contact"]),
        # memanto titles an untitled memory with its content (cut at 50, with "...").
        document("mem-2", "fact", long_content[:50] + "...", long_content),
        document("mem-3", "fact", "Short note", "Short note", created_at="2019-07-01T08:00:00+00:00"),
        # Moorcheh's own form: metadata nested.
        {"id": 4, "text": "A plain text document", "metadata": {"memory_type": "event", "source": "import"}},
    ]
    accepted = await upload(client, owner, name, docs)
    assert accepted == {"status": "queued", "submitted_ids": ["mem-1", "mem-2", "mem-3", 4]}
    rows = {r["idempotency_key"]: r for r in await stored(db, owner, name)}
    assert set(rows) == {"moorcheh:mem-1", "moorcheh:mem-2", "moorcheh:mem-3", "moorcheh:4"}
    first = rows["moorcheh:mem-1"]
    assert (first["type"], first["title"], first["content"]) == (
        "preference",
        "Contact by email",
        docs[0]["text"].split("\n\n")[1],
    )
    assert first["tags"] == ["contact"]
    assert json.loads(first["metadata"]) == {"actor_id": "agent-1", "provenance": "explicit_statement"}
    assert first["occurred_at"].isoformat() == "2026-01-05T10:00:00+00:00"
    assert (rows["moorcheh:mem-2"]["title"], rows["moorcheh:mem-2"]["content"]) == (None, long_content)
    assert rows["moorcheh:mem-3"]["occurred_at"].isoformat() == "2019-07-01T08:00:00+00:00"
    assert (rows["moorcheh:4"]["type"], rows["moorcheh:4"]["content"], rows["moorcheh:4"]["source"]) == (
        "event",
        "A plain text document",
        "import",
    )

    page = await client.get(
        f"{V1}/namespaces/{name}/documents/fetch-text-data", params={"limit": 100}, headers=key(owner)
    )
    assert page.status_code == 200, page.text
    items = {item["id"]: item for item in page.json()["items"]}
    assert {k: items[k]["text"] for k in ("mem-1", "mem-2", "mem-3")} == {
        d["id"]: d["text"] for d in docs[:3]
    }  # the cards come back as memanto wrote them
    assert items["4"]["text"] == "A plain text document"
    meta = items["mem-1"]["metadata"]
    assert meta["memory_type"] == "preference"
    assert meta["tags"] == "contact"
    assert meta["status"] == "active"
    assert meta["provenance"] == "explicit_statement"
    assert meta["created_at"] == "2026-01-05T10:00:00+00:00"
    assert "title_from_content" not in items["mem-2"]["metadata"]
    assert items["mem-3"]["created_at"] == "2019-07-01T08:00:00+00:00"


async def test_a_document_sent_again_is_stored_once(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    name = await namespace(client, owner)
    doc = document("mem-retry", "fact", "Retry", "Sent twice after a lost reply.")
    await upload(client, owner, name, [doc])
    await upload(client, owner, name, [doc, document("mem-new", "fact", "New", "Only this one is new.")])
    assert len(await stored(db, owner, name)) == 2


async def test_an_expired_document_is_kept_expired(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    await upload(
        client,
        owner,
        name,
        [
            document(
                "mem-old",
                "fact",
                "Old office",
                "The office is in Paris.",
                status="expired",
                expired_at="2025-01-01T00:00:00+00:00",
            )
        ],
    )
    hits = await search(client, owner, [name], "office")
    assert hits[0]["metadata"]["status"] == "expired"
    assert hits[0]["metadata"]["expired_at"] == "2025-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"text": ""}, "documents[1].text"),
        ({"text": None}, "documents[1].text"),
        ({"id": "has a space"}, "documents[1].id"),
        ({"id": ""}, "documents[1].id"),
        ({"memory_type": "gossip"}, "documents[1].memory_type"),
        ({"confidence": 2}, "documents[1].confidence"),
        ({"created_at": "a while ago"}, "documents[1].created_at"),
        ({"text": "x" * 10_001}, "documents[1].text"),
    ],
)
async def test_a_bad_document_rejects_the_upload_and_stores_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], bad: dict[str, Any], field: str
) -> None:
    name = await namespace(client, owner)
    docs = [document("ok", "fact", "Fine", "A fine memory."), {**document("bad", "fact", "Bad", "Bad memory."), **bad}]
    response = await client.post(f"{V1}/namespaces/{name}/documents", json={"documents": docs}, headers=key(owner))
    assert assert_problem(response, 422, "validation_error")["errors"][0]["field"] == field
    assert await stored(db, owner, name) == []


async def test_uploads_take_1_to_100_documents_to_an_agent_that_exists(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    for documents in ([], [document(f"m{i}", "fact", "T", f"Memory {i}") for i in range(101)]):
        response = await client.post(
            f"{V1}/namespaces/{name}/documents", json={"documents": documents}, headers=key(owner)
        )
        assert_problem(response, 422, "validation_error")
    missing = f"memanto_agent_{unique_agent('missing')}"
    response = await client.post(
        f"{V1}/namespaces/{missing}/documents",
        json={"documents": [document("m", "fact", "T", "x")]},
        headers=key(owner),
    )
    assert_problem(response, 404, "agent_not_found")
    odd = await client.post(
        f"{V1}/namespaces/not-memanto/documents",
        json={"documents": [document("m", "fact", "T", "x")]},
        headers=key(owner),
    )
    assert_problem(odd, 404, "agent_not_found")


async def test_fetch_text_data_pages_newest_first(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    for i in range(5):
        await upload(client, owner, name, [document(f"page-{i}", "fact", f"Item {i}", f"Item {i}")])
    seen: list[str] = []
    token = None
    while True:
        params = {"limit": 2, **({"next_token": token} if token else {})}
        response = await client.get(
            f"{V1}/namespaces/{name}/documents/fetch-text-data", params=params, headers=key(owner)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["namespace"] == name
        assert body["statistics"]["total_items"] == len(body["items"])
        seen += [item["id"] for item in body["items"]]
        token = body["pagination"]["next_token"]
        assert body["pagination"]["has_more"] is (token is not None)
        if token is None:
            break
    assert seen == [f"page-{i}" for i in reversed(range(5))]
    for params in ({"limit": 0}, {"limit": 101}, {"next_token": "forged"}):
        bad = await client.get(f"{V1}/namespaces/{name}/documents/fetch-text-data", params=params, headers=key(owner))
        assert_problem(bad, 422, "validation_error")


# --------------------------------------------------------------------------- search, answer


async def test_search_honours_moorchehs_filter_tokens_and_threshold(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    await upload(
        client,
        owner,
        name,
        [
            document(
                "pref", "preference", "Email", "The customer prefers email for invoices.", tags=["contact", "billing"]
            ),
            document("fact", "fact", "Invoices", "Invoices go out by email on the 1st.", tags=["billing"]),
            document("goal", "goal", "Goal", "Reply to every email within a day."),
        ],
    )
    assert {h["id"] for h in await search(client, owner, [name], "email")} == {"pref", "fact", "goal"}
    assert [h["id"] for h in await search(client, owner, [name], "email #memory_type:fact")] == ["fact"]
    assert {h["id"] for h in await search(client, owner, [name], "email #billing")} == {"pref", "fact"}
    assert [h["id"] for h in await search(client, owner, [name], "email #billing #contact")] == ["pref"]
    # Filters alone: the newest that pass them.
    assert [h["id"] for h in await search(client, owner, [name], "#memory_type:goal")] == ["goal"]
    hits = await search(client, owner, [name], "email")
    assert hits == sorted(hits, key=lambda h: h["score"], reverse=True)
    cut = hits[0]["score"]
    assert [h["id"] for h in await search(client, owner, [name], "email", kiosk_mode=True, threshold=cut)] == [
        hits[0]["id"]
    ]
    assert (
        len(await search(client, owner, [name], "email", kiosk_mode=False, threshold=cut)) == 3
    )  # as Moorcheh: kiosk only
    top = hits[0]
    assert top["text"].startswith("[")
    assert top["metadata"]["agent_id"] == name.removeprefix("memanto_agent_")
    bad_type = await client.post(
        f"{V1}/search", json={"namespaces": [name], "query": "email #memory_type:gossip"}, headers=key(owner)
    )
    assert_problem(bad_type, 422, "validation_error")
    vector = await client.post(f"{V1}/search", json={"namespaces": [name], "query": [0.1, 0.2]}, headers=key(owner))
    assert_problem(vector, 422, "validation_error")


async def test_search_and_answer_never_reach_another_owners_agent(
    client: Any, owner: OwnerKey, make_owner: Any
) -> None:
    agent = unique_agent("mine")
    name = await namespace(client, owner, agent)
    await upload(client, owner, name, [document("s", "fact", "Secret", "The vault code is 1234.")])
    stranger = await make_owner("stranger")
    for route, body in (
        ("search", {"namespaces": [name], "query": "vault code"}),
        ("answer", {"namespace": name, "query": "What is the vault code?"}),
    ):
        assert_problem(await client.post(f"{V1}/{route}", json=body, headers=key(stranger)), 404, "agent_not_found")
    page = await client.get(f"{V1}/namespaces/{name}/documents/fetch-text-data", headers=key(stranger))
    assert_problem(page, 404, "agent_not_found")
    assert_problem(await client.delete(f"{V1}/namespaces/{name}", headers=key(stranger)), 404, "agent_not_found")
    # The stranger's namespace of the same name is their own, and empty.
    await namespace(client, stranger, agent)
    assert await search(client, stranger, [name], "vault code") == []
    assert [h["id"] for h in await search(client, owner, [name], "vault code")] == ["s"]


async def test_answer_is_extractive_from_the_agents_memories(client: Any, owner: OwnerKey) -> None:
    name = await namespace(client, owner)
    await upload(
        client,
        owner,
        name,
        [
            document(
                "m1", "preference", "The customer prefers email over phone.", "The customer prefers email over phone."
            ),
            document("m2", "fact", "Office", "The office closes at six."),
        ],
    )
    response = await client.post(
        f"{V1}/answer",
        json={
            "namespace": name,
            "query": "How does the customer want to be contacted?",
            "ai_model": "anthropic.claude-sonnet-4-6",
            "chat_history": [],
            "temperature": 0.7,
            "header_prompt": "",
            "footer_prompt": "",
            "type": "text",
            "top_k": 15,
            "kiosk_mode": False,
        },
        headers=key(owner),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "The customer prefers email over phone."  # said once, though titled with itself
    assert (body["context_count"], body["used_context"], body["query"]) == (
        1,
        True,
        "How does the customer want to be contacted?",
    )
    assert [s["id"] for s in body["sources"]] == ["m1"]
    assert body["model"]
    for bad in (
        {"namespace": "", "query": "x"},
        {"namespace": "other", "query": "x"},
        {"namespace": name, "query": ""},
    ):
        assert_problem(await client.post(f"{V1}/answer", json=bad, headers=key(owner)), 422, "validation_error")


# --------------------------------------------------------------------------- sessions and counters


async def test_compat_calls_run_in_the_live_session_and_count_in_it(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("shared")
    session = await activate(client, owner.key, agent)
    name = f"memanto_agent_{agent}"
    await upload(
        client, owner, name, [document(f"c{i}", "fact", f"Count {i}", f"Counted memory {i}") for i in range(3)]
    )
    hits = await search(client, owner, [name], "counted memory")
    page = await client.get(
        f"{V1}/namespaces/{name}/documents/fetch-text-data", params={"limit": 2}, headers=key(owner)
    )
    current = await client.get(f"{API}/session/current", headers=token_headers(session["session_token"]))
    assert current.status_code == 200, current.text  # never superseded
    assert current.json()["memories_stored"] == 3
    assert current.json()["memories_retrieved"] == len(hits) + len(page.json()["items"]) == 5
    rows = await stored(db, owner, name)
    assert {r["session_id"] for r in rows} == {session["session_id"]}
    # With no live session, the first call activates one, marked as memanto's.
    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=owner.headers)
    assert ended.status_code == 200, ended.text
    await search(client, owner, [name], "counted")
    marks = await db.fetch(
        "SELECT metadata FROM sessions WHERE owner_id = $1 AND agent_id = $2 AND end_reason IS NULL",
        uuid.UUID(owner.owner_id),
        agent,
    )
    assert [json.loads(m["metadata"]) for m in marks] == [{"client": "memanto"}]
