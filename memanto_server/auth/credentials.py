"""Credential providers: who is calling, and with which session.

`owner` needs an API key. `claims` needs a session token; an API key sent beside it
(as the documented clients do) must belong to the same owner. `credentials` takes
either, for the one route (deactivate) that allows a key alone. They are resolved before
the handler's parameters are checked, so a caller without credentials learns nothing
from a 422.

A handler takes one of them and reaches the services through `services_of(request)`,
not as a second dependency: Litestar resolves dependencies with no order between them
concurrently, in an anyio task group per request: on the hottest routes that group and the
extra resolution cost more than the route's own work (measured with bench/profile.py).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection

from memanto_server.auth.cache import Owner
from memanto_server.errors import Forbidden, Unauthorized
from memanto_server.http import header
from memanto_server.services import Services, services_of
from memanto_server.sessions.tokens import SessionClaims

SESSION_TOKEN_HEADER = b"x-session-token"
API_KEY_HEADER = b"x-api-key"


class Credentials(msgspec.Struct, frozen=True):
    owner: Owner
    claims: SessionClaims | None


def api_key_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    authorization = header(connection, b"authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return header(connection, API_KEY_HEADER) or None


def _remember_for_log(request: Request[Any, Any, Any], owner_id: str, agent_id: str | None = None) -> None:
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    state["owner_id"] = owner_id
    if agent_id:
        state["agent_id"] = agent_id


async def _resolve_key(services: Services, key: str) -> Owner:
    owner = await services.keys.resolve(key)
    if owner is None:
        raise Unauthorized("the API key is unknown or revoked", code="invalid_api_key")
    return owner


def verified_claims(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> SessionClaims:
    """The token's claims (the rate limiter asks before the handler does; the codec remembers)."""
    return services_of(connection).tokens.verify(token)


async def _verify_token(
    request: Request[Any, Any, Any], services: Services, token: str, key: str | None
) -> Credentials:
    claims = services.tokens.verify(token)
    if key is None:
        _remember_for_log(request, claims.owner_id, claims.agent_id)
        return Credentials(owner=Owner(owner_id=claims.owner_id, key_id=""), claims=claims)
    owner = await _resolve_key(services, key)
    if owner.owner_id != claims.owner_id:
        raise Forbidden("the session token and the API key belong to different owners", code="owner_mismatch")
    _remember_for_log(request, owner.owner_id, claims.agent_id)
    return Credentials(owner=owner, claims=claims)


async def provide_owner(request: Request[Any, Any, Any]) -> Owner:
    """The owner of the request's API key, or a 401."""
    key = api_key_of(request)
    if key is None:
        raise Unauthorized(
            "an API key is required: `Authorization: Bearer mk_…` or `X-Api-Key`", code="missing_credentials"
        )
    owner = await _resolve_key(services_of(request), key)
    _remember_for_log(request, owner.owner_id)
    return owner


async def provide_claims(request: Request[Any, Any, Any]) -> SessionClaims:
    """The claims of the request's session token (with the same owner's key, if one is sent too)."""
    token = header(request, SESSION_TOKEN_HEADER)
    if not token:
        raise Unauthorized("a session token is required in `X-Session-Token`", code="missing_credentials")
    claims = (await _verify_token(request, services_of(request), token, api_key_of(request))).claims
    assert claims is not None
    return claims


async def provide_credentials(request: Request[Any, Any, Any]) -> Credentials:
    """A session token (with its key, if one is sent too) or an API key alone."""
    services = services_of(request)
    token = header(request, SESSION_TOKEN_HEADER)
    key = api_key_of(request)
    if token:
        return await _verify_token(request, services, token, key)
    if key:
        owner = await _resolve_key(services, key)
        _remember_for_log(request, owner.owner_id)
        return Credentials(owner=owner, claims=None)
    raise Unauthorized("a session token (`X-Session-Token`) or an API key is required", code="missing_credentials")
