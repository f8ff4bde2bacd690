"""A session token signed with the server's own secret but whose claims have unexpected types
is a 401 `invalid_token`, every time: never remembered as verified and later compared as the
wrong type (a string `exp` once passed the first check, then failed the memo's comparison with
a 500), and never a traceback in the log.

The tokens are signed by hand (HS256 over the JSON the test chooses), since PyJWT refuses to
make some of them; whoever holds the secret can make any of these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from memanto_server.errors import Unauthorized
from memanto_server.sessions.tokens import TokenCodec
from memanto_server.settings import Settings, key_id
from tests.helpers.http import API, assert_problem
from tests.helpers.logs import collected_logs
from tests.helpers.owners import OwnerKey, start


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(secret: str, payload: Any, header: Any = None) -> str:
    header = header if header is not None else {"alg": "HS256", "typ": "JWT", "kid": key_id(secret)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def good_payload(owner_id: str, agent_id: str, session_id: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "memanto",
        "sub": f"{owner_id}:{agent_id}",
        "owner_id": owner_id,
        "agent_id": agent_id,
        "session_id": session_id,
        "expires_at": "2099-01-01T00:00:00Z",
        "iat": now,
        "exp": now + 3600,
    }


ODD_CLAIMS: list[dict[str, Any]] = [
    {"exp": "4102444800"},  # a number in a string (2100-01-01): passed PyJWT, then broke the memo
    {"exp": [1]},
    {"exp": 1e300},
    {"exp": True},
    {"iat": [1]},
    {"iat": "now"},
    {"owner_id": 5},
    {"owner_id": None},
    {"agent_id": ["a"]},
    {"agent_id": {"id": "a"}},
    {"session_id": 12345678},
    {"iss": ["memanto"]},
    {"sub": 5},
    {"expires_at": 5},
]


@pytest.mark.parametrize("change", ODD_CLAIMS, ids=[repr(c) for c in ODD_CLAIMS])
def test_the_codec_refuses_claims_of_unexpected_types_every_time(change: dict[str, Any]) -> None:
    secret = "s" * 40
    codec = TokenCodec(Settings.from_env({"MEMANTO_SECRET_KEY": secret}))
    payload = good_payload("7b0c4f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f", "support-bot", "sess_abcdefghijklmnop")
    assert codec.verify(signed(secret, payload)).agent_id == "support-bot"  # the hand-signed token is a good one
    token = signed(secret, {**payload, **change})
    for _ in range(3):  # refused again after a refusal: nothing was remembered
        with pytest.raises(Unauthorized) as refused:
            codec.verify(token)
        assert refused.value.code == "invalid_token"


@pytest.mark.parametrize(
    "header",
    [["HS256"], {"alg": "HS256", "kid": ["x"]}, {"alg": ["HS256"], "kid": "x"}, "HS256"],
    ids=["a list", "a list kid", "a list alg", "a string"],
)
def test_the_codec_refuses_headers_of_unexpected_types(header: Any) -> None:
    secret = "s" * 40
    codec = TokenCodec(Settings.from_env({"MEMANTO_SECRET_KEY": secret}))
    payload = good_payload("7b0c4f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f", "support-bot", "sess_abcdefghijklmnop")
    with pytest.raises(Unauthorized) as refused:
        codec.verify(signed(secret, payload, header))
    assert refused.value.code == "invalid_token"


async def test_the_api_answers_401_invalid_token_and_logs_no_error(
    client: Any, owner: OwnerKey, settings: Settings
) -> None:
    live = await start(client, owner)
    payload = good_payload(owner.owner_id, live.agent_id, live.session_id)
    assert (
        await client.get(f"{API}/session/current", headers={"X-Session-Token": signed(settings.secret_key, payload)})
    ).status_code == 200
    with collected_logs() as logs:
        for change in ODD_CLAIMS:
            token = signed(settings.secret_key, {**payload, **change})
            for _ in range(2):
                current = await client.get(f"{API}/session/current", headers={"X-Session-Token": token})
                assert_problem(current, 401, "invalid_token")
                remembered = await client.post(
                    live.url("remember"), params={"content": "x"}, headers={"X-Session-Token": token}
                )
                assert_problem(remembered, 401, "invalid_token")
    assert logs.errors() == []
    stored = (await client.get(f"{API}/session/current", headers=live.headers)).json()["memories_stored"]
    assert stored == 0
