"""Settings: each required variable missing or malformed gives the documented message."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from core.settings import SettingsError, load_settings

VALID: dict[str, str] = {
    "DATABASE_URL": "postgresql://u:pw@127.0.0.1:5433/postgres",
    "MINIO_ENDPOINT": "127.0.0.1:9000",
    "MINIO_ACCESS_KEY": "minio-access",
    "MINIO_SECRET_KEY": "minio-secret-value",
    "LIVEKIT_URL": "http://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "livekit-secret-value-xyz",
    "API_TOKENS": "admin-token-0123456789:admin",
}
REQUIRED = list(VALID)


def load(**env: Any):
    return load_settings(_env_file=None, **env)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)


def test_valid_settings_load_with_defaults() -> None:
    s = load(**VALID)
    assert s.TEMPORAL_ADDRESS == "localhost:7233"
    assert s.TEMPORAL_TASK_QUEUE == "callcenter"
    assert s.api_tokens == {"admin-token-0123456789": "admin"}
    assert s.payload_keys == []


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_variable_is_named(name: str) -> None:
    env = {k: v for k, v in VALID.items() if k != name}
    with pytest.raises(SettingsError) as err:
        load(**env)
    assert f"{name} is not set: expected" in str(err.value)
    assert str(err.value).count(" is not set") == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://x/y", "must start with postgresql://"),
        ("MINIO_ENDPOINT", "http://127.0.0.1:9000", "must be host:port without a scheme"),
        ("LIVEKIT_URL", "127.0.0.1:7880", "must start with http://"),
        ("TEMPORAL_ADDRESS", "localhost", "must be host:port"),
        ("API_TOKENS", "admin-token-0123456789:root", "roles are supervisor, ops, admin, rep"),
        ("API_TOKENS", "short:admin", "shorter than 16"),
        ("API_TOKENS", "a:admin-token-0123456789:ops:x", "role 'ops' takes no calls"),
        ("API_TOKENS", "a:rep-token-0123456789abc:rep:Sales", "skills that are not"),
        ("API_TOKENS", "a:rep-token-0123456789abc:rep:+", "skills that are not"),
        ("API_TOKENS", "a:b:rep-token-0123456789abc:rep:x", "not token:role, name:token:role"),
        ("API_TOKENS", "admin-token/0123456789=:admin", "WebSocket subprotocol cannot carry"),
        ("API_TOKENS", "a b:admin-token-0123456789:admin", "name that is not"),
        (
            "API_TOKENS",
            "ada:admin-token-0123456789:admin,ada:supervisor-token-0123456789:supervisor",
            "repeats the name 'ada'",
        ),
        (
            "API_TOKENS",
            "admin-token-0123456789:admin,admin-token-0123456789:ops",
            "repeats the token",
        ),
        ("PAYLOAD_KEYS", "k1:not-base64!", "not valid base64"),
        ("PAYLOAD_KEYS", "k1:" + base64.b64encode(b"x" * 16).decode(), "must decode to 32 bytes"),
        ("API_PORT", "eighty", "API_PORT is malformed"),
        ("MINIO_SECURE", "maybe", "MINIO_SECURE is malformed"),
        ("RECORDING_CONSENT", "sometimes", "RECORDING_CONSENT is malformed"),
        ("SILENCE_ALERT_S", "-1", "SILENCE_ALERT_S is malformed"),
    ],
)
def test_each_malformed_variable_is_named(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(**{**VALID, name: value})
    assert f"{name} is malformed" in str(err.value)
    assert expected in str(err.value)


def test_secrets_never_appear_in_the_message() -> None:
    secret = "super-secret-token-that-must-not-leak"
    with pytest.raises(SettingsError) as err:
        load(**{**VALID, "API_TOKENS": f"{secret}:root", "LIVEKIT_URL": "nope"})
    assert secret not in str(err.value)
    assert "livekit-secret-value-xyz" not in repr(load(**VALID))


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in VALID.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", "other-queue")
    key = base64.b64encode(b"k" * 32).decode()
    monkeypatch.setenv("PAYLOAD_KEYS", f"new:{key},old:{key}")
    s = load()
    assert s.TEMPORAL_TASK_QUEUE == "other-queue"
    assert [kid for kid, _ in s.payload_keys] == ["new", "old"]


def test_api_tokens_may_carry_the_name_audits_show() -> None:
    s = load(
        **{**VALID, "API_TOKENS": "ada.l:admin-token-0123456789:admin,sup-token-0123456789x:ops"}
    )
    assert [(e.name, e.token, e.role) for e in s.api_token_entries] == [
        ("ada.l", "admin-token-0123456789", "admin"),
        (None, "sup-token-0123456789x", "ops"),
    ]
    assert s.api_tokens == {"admin-token-0123456789": "admin", "sup-token-0123456789x": "ops"}


def test_desk_roles_carry_skills_and_default_to_general() -> None:
    raw = ("ann:rep-token-0123456789abc:rep:service+sales,bo:sup-token-0123456789xy:supervisor,"
           "ops-token-0123456789abc:ops")  # fmt: skip
    s = load(**{**VALID, "API_TOKENS": raw})
    assert [(e.name, e.role, e.skills) for e in s.api_token_entries] == [
        ("ann", "rep", ("sales", "service")),
        ("bo", "supervisor", ("general",)),  # supervisors and admins can act as reps
        (None, "ops", ()),
    ]


def test_worker_is_unversioned_unless_a_build_id_is_set() -> None:
    """Tests and the time-skipping server run unversioned workers: no build id by default."""
    s = load(**VALID)
    assert s.WORKER_DEPLOYMENT_NAME == "callcenter"
    assert s.worker_version is None and s.new_calls_pinned_to is None
    v = load(**VALID, WORKER_BUILD_ID="v5.0.1+abc", PIN_NEW_CALLS_TO="v5.0.1+abc").worker_version
    assert v is not None and v.to_canonical_string() == "callcenter.v5.0.1+abc"


@pytest.mark.parametrize(
    ("name", "value"),
    [("WORKER_DEPLOYMENT_NAME", "call.center"), ("WORKER_DEPLOYMENT_NAME", ""),
     ("WORKER_BUILD_ID", "has space"), ("PIN_NEW_CALLS_TO", "a/b")],
)  # fmt: skip
def test_malformed_versioning_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} is malformed"):
        load(**VALID, **{name: value})


def test_production_refuses_to_start_without_payload_keys() -> None:
    """CALLCENTER_ENV=production (docker-compose sets it) needs PAYLOAD_KEYS: names,
    transcripts and failures must never sit in Temporal history in plaintext."""
    with pytest.raises(SettingsError) as err:
        load(**VALID, CALLCENTER_ENV="production")
    assert "PAYLOAD_KEYS is not set: required with CALLCENTER_ENV=production" in str(err.value)
    with pytest.raises(SettingsError, match="PAYLOAD_KEYS is not set"):
        load(**VALID, CALLCENTER_ENV="production", PAYLOAD_KEYS=" ")
    key = base64.b64encode(b"k" * 32).decode()
    s = load(**VALID, CALLCENTER_ENV="production", PAYLOAD_KEYS=f"k1:{key}")
    assert s.payload_keys == [("k1", b"k" * 32)] and s.require_encryption
    assert load(**VALID).payload_keys == []  # development: optional
