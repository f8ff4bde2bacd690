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
from typing import Annotated, Any

import jwt
import msgspec

from memanto_server.errors import Unauthorized
from memanto_server.lib.timeutil import iso_z
from memanto_server.limits import AGENT_ID_PATTERN
from memanto_server.settings import Settings, key_id

ALGORITHM = "HS256"
ISSUER = "memanto"
# PyJWT reads `exp` and `iat` of any type with int() ("123" passes, a list raises TypeError);
# TokenPayload checks every claim's type instead, then `iss`, `iat` and `exp` are compared.
_SIGNATURE_ONLY: dict[str, Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_iss": False,
    "verify_aud": False,
}
VERIFIED_MEMO_SIZE = 8192


_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


OwnerId = Annotated[str, msgspec.Meta(pattern=_UUID)]
AgentId = Annotated[str, msgspec.Meta(pattern=AGENT_ID_PATTERN)]
SessionId = Annotated[str, msgspec.Meta(pattern=r"^sess_[A-Za-z0-9_-]{8,64}$")]


class SessionClaims(msgspec.Struct, frozen=True):
    """What a verified token binds."""

    owner_id: OwnerId
    agent_id: AgentId
    session_id: SessionId


class TokenPayload(msgspec.Struct, frozen=True):
    """Every claim this server signs, of the type it signs it with: a token whose claims have
    any other shape (a number for `owner_id`, a string for `exp`) is refused, even if signed,
    before anything is remembered or compared."""

    iss: str
    sub: str
    owner_id: OwnerId
    agent_id: AgentId
    session_id: SessionId
    expires_at: str
    iat: int
    exp: int


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
            # The signature only: the claims are checked below, each for its type first.
            payload = jwt.decode(token, secret, algorithms=[ALGORITHM], options=_SIGNATURE_ONLY)
            claims = msgspec.convert(payload, TokenPayload)
        except (jwt.PyJWTError, msgspec.ValidationError):
            raise Unauthorized("the session token is invalid", code="invalid_token") from None
        now = time.time()
        if claims.iss != ISSUER or claims.iat > now:
            raise Unauthorized("the session token is invalid", code="invalid_token")
        if claims.exp <= now:
            raise _expired()
        return SessionClaims(
            owner_id=claims.owner_id, agent_id=claims.agent_id, session_id=claims.session_id
        ), claims.exp
