"""Credential dependencies: who is calling, and with which session.

`owner` needs an API key. `claims` needs a session token; an API key sent beside it
(as the documented clients do) must belong to the same owner. `credentials` takes
either, for the one route (deactivate) that allows a key alone.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Headers

from app.auth.cache import Owner
from app.errors import Forbidden, Unauthorized
from app.services import Services
from app.sessions.tokens import SessionClaims

SESSION_TOKEN_HEADER = "x-session-token"  # noqa: S105 - a header name
API_KEY_HEADER = "x-api-key"


class Credentials(msgspec.Struct, frozen=True):
    owner: Owner
    claims: SessionClaims | None


def _services(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def api_key_of(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get(API_KEY_HEADER) or None


def _remember_for_log(request: Request[Any, Any, Any], owner_id: str, agent_id: str | None = None) -> None:
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    state["owner_id"] = owner_id
    if agent_id:
        state["agent_id"] = agent_id


async def _resolve_key(request: Request[Any, Any, Any], key: str) -> Owner:
    owner = await _services(request).keys.resolve(key)
    if owner is None:
        raise Unauthorized("the API key is unknown or revoked", code="invalid_api_key")
    return owner


_VERIFIED_KEY = "memanto_verified_claims"


def verified_claims(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> SessionClaims:
    """The token's claims, verified once per request however many guards ask (the rate
    limiter asks before the route's own credential dependency does)."""
    state = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    cached = state.get(_VERIFIED_KEY)
    if cached is not None and cached[0] == token:
        return cached[1]  # type: ignore[no-any-return]
    claims = connection.app.state.services.tokens.verify(token)
    state[_VERIFIED_KEY] = (token, claims)
    return claims


async def _verify_token(request: Request[Any, Any, Any], token: str, key: str | None) -> Credentials:
    claims = verified_claims(request, token)
    if key is None:
        _remember_for_log(request, claims.owner_id, claims.agent_id)
        return Credentials(owner=Owner(owner_id=claims.owner_id, key_id=""), claims=claims)
    owner = await _resolve_key(request, key)
    if owner.owner_id != claims.owner_id:
        raise Forbidden("the session token and the API key belong to different owners", code="owner_mismatch")
    _remember_for_log(request, owner.owner_id, claims.agent_id)
    return Credentials(owner=owner, claims=claims)


async def provide_owner(request: Request[Any, Any, Any]) -> Owner:
    key = api_key_of(request.headers)
    if key is None:
        raise Unauthorized(
            "an API key is required: `Authorization: Bearer mk_…` or `X-Api-Key`", code="missing_credentials"
        )
    owner = await _resolve_key(request, key)
    _remember_for_log(request, owner.owner_id)
    return owner


async def provide_claims(request: Request[Any, Any, Any]) -> SessionClaims:
    token = request.headers.get(SESSION_TOKEN_HEADER)
    if not token:
        raise Unauthorized("a session token is required in `X-Session-Token`", code="missing_credentials")
    credentials = await _verify_token(request, token, api_key_of(request.headers))
    assert credentials.claims is not None
    return credentials.claims


async def provide_credentials(request: Request[Any, Any, Any]) -> Credentials:
    token = request.headers.get(SESSION_TOKEN_HEADER)
    key = api_key_of(request.headers)
    if token:
        return await _verify_token(request, token, key)
    if key:
        owner = await _resolve_key(request, key)
        _remember_for_log(request, owner.owner_id)
        return Credentials(owner=owner, claims=None)
    raise Unauthorized("a session token (`X-Session-Token`) or an API key is required", code="missing_credentials")
