"""Session tokens (TokenCodec): what a remembered verification still checks.

The codec remembers tokens it has verified, so that the signature is checked once per
token rather than once per request; these tests pin down that the memo never lets through
what a fresh check would refuse.
"""

from __future__ import annotations

import time

import jwt
import pytest

from memanto_server.errors import Unauthorized
from memanto_server.sessions.tokens import SessionClaims, TokenCodec
from memanto_server.settings import Settings, key_id

SECRET = "s" * 40
CLAIMS = SessionClaims(
    owner_id="7b0c4f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f", agent_id="support-bot", session_id="sess_abcdefghijklmnop"
)


def codec(memo_size: int = 8) -> TokenCodec:
    return TokenCodec(Settings.from_env({"MEMANTO_SECRET_KEY": SECRET}), memo_size=memo_size)


def issue(tokens: TokenCodec, *, hard_expiry_s: float, claims: SessionClaims = CLAIMS) -> str:
    now_ms = int(time.time() * 1000)
    return tokens.issue(claims, created_ms=now_ms, expires_ms=now_ms + 60_000, hard_expiry_ms=int(hard_expiry_s * 1000))


def code_of(error: pytest.ExceptionInfo[Unauthorized]) -> str:
    return error.value.code


def test_a_remembered_token_is_refused_once_its_hard_lifetime_ends() -> None:
    tokens = codec()
    token = issue(tokens, hard_expiry_s=time.time() + 2)
    assert tokens.verify(token) == CLAIMS
    assert tokens.verify(token) == CLAIMS  # from the memo
    time.sleep(2.1)
    with pytest.raises(Unauthorized) as refused:
        tokens.verify(token)
    assert code_of(refused) == "session_expired"
    with pytest.raises(Unauthorized) as again:  # dropped from the memo, refused by the full check too
        tokens.verify(token)
    assert code_of(again) == "session_expired"


def test_a_token_differing_from_a_remembered_one_is_checked_in_full() -> None:
    tokens = codec()
    token = issue(tokens, hard_expiry_s=time.time() + 3600)
    assert tokens.verify(token) == CLAIMS
    header, payload, signature = token.split(".")
    forged_payload = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "owner_id": "00000000-0000-4000-8000-000000000000"},
        "x" * 40,
        algorithm="HS256",
        headers={"kid": key_id(SECRET)},
    ).split(".")[1]
    for forged in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{signature[:-2]}AA", token + " "):
        with pytest.raises(Unauthorized) as refused:
            tokens.verify(forged)
        assert code_of(refused) == "invalid_token"


def test_refusals_are_not_remembered_and_the_memo_stays_bounded() -> None:
    tokens = codec(memo_size=3)
    other = TokenCodec(Settings.from_env({"MEMANTO_SECRET_KEY": "o" * 40}))
    foreign = issue(other, hard_expiry_s=time.time() + 3600)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.verify(foreign)
    issued = [
        issue(
            tokens,
            hard_expiry_s=time.time() + 3600,
            claims=SessionClaims(CLAIMS.owner_id, f"agent-{i}", CLAIMS.session_id),
        )
        for i in range(5)
    ]
    for token in issued:
        assert tokens.verify(token).agent_id.startswith("agent-")
    assert len(tokens._verified) == 3
    assert list(tokens._verified) == issued[-3:]  # the oldest are forgotten first
    assert tokens.verify(issued[0]).agent_id == "agent-0"  # and verified again in full when they return
