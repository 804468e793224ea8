"""Browsers get the public URLs (LIVEKIT_PUBLIC_URL, MINIO_PUBLIC_URL); the servers keep
talking to the internal ones."""

from __future__ import annotations

from api.resources import Resources
from core import models as m
from core.settings import load_settings

BASE = dict(
    DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="minio:9000", MINIO_ACCESS_KEY="a",
    MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://livekit:7880", LIVEKIT_API_KEY="k",
    LIVEKIT_API_SECRET="s", API_TOKENS="t0123456789abcdef:admin", PAYLOAD_KEYS="",
)  # fmt: skip


def test_calls_hand_out_the_public_livekit_url() -> None:
    s = load_settings(**BASE, LIVEKIT_PUBLIC_URL="wss://lk.example.com")
    assert m.CallConfig.from_settings(s).livekit_url == "wss://lk.example.com"
    assert m.CallConfig.from_settings(load_settings(**BASE, LIVEKIT_PUBLIC_URL="")).livekit_url == (
        "ws://livekit:7880"
    )


def test_recording_links_are_signed_for_the_public_s3_host() -> None:
    res = Resources(load_settings(**BASE, MINIO_PUBLIC_URL="https://media.example.com"))
    url = res.presigner.presigned_get_object("recordings", "conversations/x.ogg")
    assert url.startswith("https://media.example.com/recordings/conversations/x.ogg?")
    internal = Resources(load_settings(**BASE, MINIO_PUBLIC_URL=""))
    assert internal.presigner.presigned_get_object("recordings", "k").startswith(
        "http://minio:9000/"
    )
