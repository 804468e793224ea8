"""The customer's join token, signed by the API from the grant the workflow decided: for that
room and identity only, microphone only, `exp` the grant's expiry and `jti` its token id; and
the rejoin proof read back from it (signature, issuer, room, identity, a token id)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from livekit import api

from api.domain.join_tokens import UNBOUND_PROOF, rejoin_proof, sign_join_token
from api.errors import Forbidden
from core import models as m
from core.settings import Settings
from workflows.common import customer_grant


def grant_for(call_id: str, ttl_s: float = 600) -> m.TokenGrant:
    cfg = m.CallConfig(livekit_url="wss://lk.example", token_ttl_s=ttl_s)
    return customer_grant(call_id, "Ada", "tok-1", time.time(), cfg)


def test_the_token_grants_joining_that_room_only(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    call_id = m.new_call_id()
    grant = sign_join_token(settings, grant_for(call_id))
    key, secret = settings.LIVEKIT_API_KEY.get_secret_value(), settings.LIVEKIT_API_SECRET
    claims = api.TokenVerifier(key, secret.get_secret_value()).verify(grant.token)
    assert claims.identity == m.customer_identity(call_id) and claims.name == "Ada"
    video = claims.video
    assert video is not None and video.room_join and video.room == m.room_name_for(call_id)
    assert not (video.room_admin or video.room_create or video.room_list or video.room_record)
    # microphone only: no camera, no screen share, no data (so no RPC to the agent)
    assert video.can_publish and video.can_publish_sources == ["microphone"]
    assert video.can_publish_data is False and video.can_subscribe
    body = jwt.decode(grant.token, options={"verify_signature": False})
    assert body["jti"] == "tok-1"
    assert body["exp"] == datetime.fromisoformat(grant.expires_at).timestamp()
    assert abs(body["exp"] - (time.time() + 600)) < 5 and grant.livekit_url == "wss://lk.example"
    proof = rejoin_proof(settings, grant.token, call_id, oldest_s=0)
    assert proof.token_id == "tok-1" and proof.expires_at == body["exp"]


def test_a_token_that_is_not_this_calls_proves_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    call_id = m.new_call_id()
    token = sign_join_token(settings, grant_for(call_id)).token
    secret = settings.LIVEKIT_API_SECRET.get_secret_value()
    body: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    bad = [
        sign_join_token(settings, grant_for(m.new_call_id())).token,  # another call's
        jwt.encode(body, "another-secret-0123456789abcdef0123", "HS256"),  # not ours
        jwt.encode(body | {"exp": int(time.time()) - 100}, secret, "HS256"),  # too old
        "x" * 40,
    ]
    for token in bad:
        with pytest.raises(Forbidden) as err:
            rejoin_proof(settings, token, call_id, oldest_s=50)
        assert err.value.field == "token" and token not in err.value.message
    # Without an id (a call of the previous release minted it): no grant of ours matches it.
    legacy = jwt.encode({k: v for k, v in body.items() if k != "jti"}, secret, "HS256")
    assert rejoin_proof(settings, legacy, call_id, oldest_s=0).token_id == UNBOUND_PROOF


def test_a_grant_that_holds_a_token_is_left_alone(make_settings: Callable[..., Settings]) -> None:
    """A call on an earlier release (its worker minted the token) during a deploy."""
    old = m.TokenGrant(
        "c", "call-c", "eyJold", "ws://x", "customer-c", datetime.now(UTC).isoformat()
    )
    assert sign_join_token(make_settings(), old) is old
