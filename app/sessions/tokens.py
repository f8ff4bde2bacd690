"""Session tokens: HS256 JWTs with a `kid`, so the signing secret can be rotated.

A token only proves who it was issued to and for which session; whether that
session is still live is the session store's answer, never the token's.
"""

from __future__ import annotations

from typing import Annotated

import jwt
import msgspec

from app.agents.schemas import AGENT_ID_PATTERN
from app.errors import Unauthorized
from app.settings import Settings, key_id
from app.timeutil import iso_z

ALGORITHM = "HS256"
ISSUER = "memanto"
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "agent_id", "session_id", "owner_id", "expires_at"]


_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class SessionClaims(msgspec.Struct, frozen=True):
    """What a verified token binds: claims of any other shape are refused, even if signed."""

    owner_id: Annotated[str, msgspec.Meta(pattern=_UUID)]
    agent_id: Annotated[str, msgspec.Meta(pattern=AGENT_ID_PATTERN)]
    session_id: Annotated[str, msgspec.Meta(pattern=r"^sess_[A-Za-z0-9_-]{8,64}$")]


class TokenCodec:
    def __init__(self, settings: Settings) -> None:
        self._current_kid = key_id(settings.secret_key)
        self._secrets = settings.signing_keys

    def issue(self, claims: SessionClaims, *, created_ms: int, expires_ms: int, hard_expiry_ms: int) -> str:
        payload = {
            "iss": ISSUER,
            "sub": f"{claims.owner_id}:{claims.agent_id}",
            "owner_id": claims.owner_id,
            "agent_id": claims.agent_id,
            "session_id": claims.session_id,
            "expires_at": iso_z(expires_ms),
            "iat": created_ms // 1000,
            "exp": hard_expiry_ms // 1000,
        }
        return jwt.encode(
            payload, self._secrets[self._current_kid], algorithm=ALGORITHM, headers={"kid": self._current_kid}
        )

    def verify(self, token: str) -> SessionClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the session token is malformed", code="invalid_token") from None
        secret = self._secrets.get(str(header.get("kid", "")))
        if secret is None or header.get("alg") != ALGORITHM:
            raise Unauthorized("the session token was not signed by this server", code="invalid_token")
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the session has expired; activate a new one", code="session_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the session token is invalid", code="invalid_token") from None
        try:
            return msgspec.convert(payload, SessionClaims)
        except msgspec.ValidationError:
            raise Unauthorized("the session token is invalid", code="invalid_token") from None
