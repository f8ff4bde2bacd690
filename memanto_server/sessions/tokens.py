"""Session tokens: HS256 JWTs with a `kid`, so the signing secret can be rotated.

A token only proves who it was issued to and for which session; whether that
session is still live is the session store's answer, never the token's.

A client sends the same token with every request of its session, so the outcome of a
successful check is remembered, keyed by the whole token string: a token is immutable and
its signature check can only come out the same way again (a token of a secret that is no
longer trusted needs a restart to stop being trusted, which empties the memo too). Only the
hard `exp` is time-dependent, and it is checked on every hit. The memo is a small dict
that forgets its oldest entries first; a cache library would add nothing here.
"""

from __future__ import annotations

import time
from typing import Annotated

import jwt
import msgspec

from memanto_server.agents.schemas import AGENT_ID_PATTERN
from memanto_server.errors import Unauthorized
from memanto_server.lib.timeutil import iso_z
from memanto_server.settings import Settings, key_id

ALGORITHM = "HS256"
ISSUER = "memanto"
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "agent_id", "session_id", "owner_id", "expires_at"]
VERIFIED_MEMO_SIZE = 8192


_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class SessionClaims(msgspec.Struct, frozen=True):
    """What a verified token binds: claims of any other shape are refused, even if signed."""

    owner_id: Annotated[str, msgspec.Meta(pattern=_UUID)]
    agent_id: Annotated[str, msgspec.Meta(pattern=AGENT_ID_PATTERN)]
    session_id: Annotated[str, msgspec.Meta(pattern=r"^sess_[A-Za-z0-9_-]{8,64}$")]


def _expired() -> Unauthorized:
    return Unauthorized("the session has expired; activate a new one", code="session_expired")


class TokenCodec:
    def __init__(self, settings: Settings, memo_size: int = VERIFIED_MEMO_SIZE) -> None:
        self._current_kid = key_id(settings.secret_key)
        self._secrets = settings.signing_keys
        self._memo_size = memo_size
        self._verified: dict[str, tuple[SessionClaims, int]] = {}  # token -> (claims, hard `exp`)

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
        """The token's claims if this server signed it and its hard lifetime has not run out."""
        memo = self._verified.get(token)
        if memo is not None:
            if time.time() < memo[1]:
                return memo[0]
            del self._verified[token]
            raise _expired()
        claims, hard_expiry = self._check(token)
        if len(self._verified) >= self._memo_size:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (claims, hard_expiry)
        return claims

    def _check(self, token: str) -> tuple[SessionClaims, int]:
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
            raise _expired() from None
        except jwt.PyJWTError:
            raise Unauthorized("the session token is invalid", code="invalid_token") from None
        try:
            return msgspec.convert(payload, SessionClaims), payload["exp"]
        except msgspec.ValidationError:
            raise Unauthorized("the session token is invalid", code="invalid_token") from None
