"""JSONResponse (memanto_server/http.py) sends what Litestar's own path sends, by a shorter one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Response
from litestar.datastructures import Cookie

from memanto_server.http import JSONResponse, _Sent


class Money:
    """A type msgspec does not know: only the app's type encoders do (as pydantic's types)."""

    def __init__(self, cents: int) -> None:
        self.cents = cents


# The app's type encoders (with pydantic installed, its init plugin registers some).
TYPE_ENCODERS: dict[Any, Any] = {Money: lambda money: f"{money.cents / 100:.2f}"}


class Answer(msgspec.Struct):
    memory_id: UUID
    created_at: datetime
    title: str | None
    tags: list[str]
    score: float


ANSWER = Answer(UUID(int=7), datetime(2026, 12, 2, 8, 0, tzinfo=UTC), "Ünïcode ✓", ["a", "b"], 0.5)


def sent(asgi: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    asyncio.run(asgi({}, None, send))
    return messages


def as_litestar_would(response: Response[Any], **kwargs: Any) -> list[dict[str, Any]]:
    return sent(Response.to_asgi_response(response, None, None, **kwargs))  # type: ignore[arg-type]


def handler_kwargs(**overrides: Any) -> dict[str, Any]:
    """What Litestar's response handler passes (litestar/handlers/http_handlers/_utils.py)."""
    kwargs: dict[str, Any] = {
        "background": None,
        "cookies": [],
        "headers": {"X-Layer": "from a layer", "X-Session-Expires-At": "overridden"},
        "media_type": "",
        "status_code": 200,
        "type_encoders": TYPE_ENCODERS,
    }
    return kwargs | overrides


def normalised(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**m, "headers": sorted(m["headers"])} if "headers" in m else m for m in messages]


@pytest.mark.parametrize("status", [200, 201])
def test_same_status_headers_and_body_as_litestar(status: int) -> None:
    def make() -> JSONResponse[Answer]:
        return JSONResponse(ANSWER, status_code=status, headers={"X-Session-Expires-At": "2026-12-02T14:00:00.000Z"})

    lean = make().to_asgi_response(None, None, **handler_kwargs())  # type: ignore[arg-type]
    assert isinstance(lean, _Sent)  # the short path was taken
    ours = sent(lean)
    assert normalised(ours) == normalised(as_litestar_would(make(), **handler_kwargs()))
    assert (b"x-session-expires-at", b"2026-12-02T14:00:00.000Z") in ours[0]["headers"]  # the answer's own wins
    assert msgspec.json.decode(ours[1]["body"])["title"] == "Ünïcode ✓"


@pytest.mark.parametrize(
    ("response", "overrides"),
    [
        (JSONResponse(None, status_code=204), {}),  # no body at all
        (JSONResponse(ANSWER, cookies=[Cookie(key="k", value="v")]), {}),
        (JSONResponse(ANSWER), {"cookies": [Cookie(key="layer", value="v")]}),
        (JSONResponse(ANSWER, media_type="application/problem+json"), {}),
        (JSONResponse({"price": Money(1250)}), {}),
    ],
    ids=["204", "own-cookie", "layer-cookie", "other-media-type", "type-encoder"],
)
def test_what_the_short_path_does_not_cover_goes_litestars_way(
    response: JSONResponse[Any], overrides: dict[str, Any]
) -> None:
    kwargs = handler_kwargs(**overrides)
    asgi = response.to_asgi_response(None, None, **kwargs)  # type: ignore[arg-type]
    assert not isinstance(asgi, _Sent)
    answer = sent(asgi)
    assert normalised(answer) == normalised(as_litestar_would(response, **kwargs))
    if isinstance(response.content, dict):
        assert msgspec.json.decode(answer[1]["body"]) == {"price": "12.50"}
