"""One settings object for every process, read from the environment, `.env` and `.devstack/env`.

`load_settings()` validates everything at start-up and raises `SettingsError` whose message
names each missing or malformed variable and what it expects. Secret values are `SecretStr`
and never appear in a message, a log line or a repr.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.common import WorkerDeploymentVersion

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_ENV = Path(os.environ.get("DEVSTACK_DIR") or ROOT / ".devstack") / "env"

ROLES = ("supervisor", "ops", "admin", "rep")
# Roles that may take calls at the desk (supervisors and admins can act as reps).
DESK_ROLES = ("rep", "supervisor", "admin")
_SKILL = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# RFC 7230 `tchar`: the dashboard sends its token as a WebSocket subprotocol, which allows no more.
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BUILD_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,128}$")


@dataclass(frozen=True)
class ApiToken:
    """One `API_TOKENS` entry; `name` (optional) is who the audit log says acted."""

    name: str | None
    token: str
    role: str
    skills: tuple[str, ...] = ()  # what a desk role may take calls for (`...:rep:sales+service`)


class RecordingConsent(StrEnum):
    ANNOUNCE = "announce"
    ASK = "ask"
    OFF = "off"


class DeploymentEnv(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class RecordingOnWithdrawal(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


class SettingsError(Exception):
    """Raised when the environment does not describe a runnable configuration."""


class Settings(BaseSettings):
    """Every setting of the product. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=(str(DEVSTACK_ENV), ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        hide_input_in_errors=True,
    )

    # Temporal
    TEMPORAL_ADDRESS: str = Field("localhost:7233", description="host:port of Temporal's frontend")
    TEMPORAL_NAMESPACE: str = "default"
    TEMPORAL_TASK_QUEUE: str = "callcenter"
    TEMPORAL_TLS_CERT: str = ""  # client certificate (PEM file path) for mTLS
    TEMPORAL_TLS_KEY: SecretStr | None = None  # its private key (PEM file path)
    TEMPORAL_TLS_CA: str = ""  # server CA (PEM file path); TLS with system roots when only this
    TEMPORAL_TLS: bool = False  # TLS with system roots and no client certificate
    TEMPORAL_API_KEY: SecretStr | None = None  # Temporal Cloud API key (implies TLS)
    # Worker Versioning (docs/deploy.md): with a build id the worker polls as the version
    # WORKER_DEPLOYMENT_NAME.WORKER_BUILD_ID and calls stay pinned to the version they started
    # on; unset, it is an unversioned worker (tests, the time-skipping server, release 4).
    WORKER_DEPLOYMENT_NAME: str = Field(
        "callcenter", description="the Worker Deployment's name (letters, digits, - and _)"
    )
    WORKER_BUILD_ID: str = Field(
        "", description="this build's id, e.g. a git commit or release tag (empty: unversioned)"
    )
    # While the calls of an unversioned release drain, the Deployment has no Current Version
    # (one would take those calls over): the API pins each new call to this build instead.
    PIN_NEW_CALLS_TO: str = Field(
        "", description="build id new calls are pinned to at start (the unversioned bridge)"
    )
    # PostgreSQL
    DATABASE_URL: SecretStr = Field(
        description="postgresql://user:pass@host:port/db (or ?host=<socket dir>)"
    )
    # Object storage
    MINIO_ENDPOINT: str = Field(description="host:port of the S3 endpoint, no scheme")
    MINIO_ACCESS_KEY: SecretStr
    MINIO_SECRET_KEY: SecretStr
    MINIO_SECURE: bool = False
    MINIO_REGION: str = "us-east-1"  # fixed, so presigning URLs needs no round trip
    MINIO_PUBLIC_URL: str = Field(
        "", description="http(s)://host[:port] browsers reach S3 at (recording links)"
    )
    RECORDINGS_BUCKET: str = "recordings"
    RECORDING_URL_TTL_S: int = Field(900, ge=1, le=900)
    RECORDING_RETENTION_DAYS: int = Field(365, ge=1)
    # Egress staging: where LiveKit Egress uploads each file before the worker stores it
    EGRESS_BUCKET: str = "egress"
    EGRESS_S3_ENDPOINT: str = Field(
        "", description="URL Egress uploads to (default http(s)://MINIO_ENDPOINT; AWS: empty)"
    )
    EGRESS_S3_FORCE_PATH_STYLE: bool = True
    EGRESS_S3_ACCESS_KEY: SecretStr | None = None  # default: MINIO_ACCESS_KEY
    EGRESS_S3_SECRET_KEY: SecretStr | None = None  # default: MINIO_SECRET_KEY
    EGRESS_UPLOAD_IN_REQUEST: bool = True  # false: Egress's own `storage:` config decides
    EGRESS_STAGING_KEEP_DAYS: int = Field(0, ge=0)  # 0: delete once stored; N: expire after N
    RECORDING_SOURCE_HOSTS: str = Field(
        "", description="comma-separated host[:port] an http(s) egress location may be read from"
    )
    # LiveKit
    LIVEKIT_URL: str = Field(description="http(s):// or ws(s):// URL of the LiveKit server")
    LIVEKIT_PUBLIC_URL: str = Field(
        "", description="ws(s):// URL browsers connect to (default LIVEKIT_URL)"
    )
    LIVEKIT_API_KEY: SecretStr
    LIVEKIT_API_SECRET: SecretStr
    AGENT_NAME: str = "sarah-cme"
    # Agent's cloud services (checked by the agent at its own start-up)
    DEEPGRAM_API_KEY: SecretStr | None = None
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_BASE_URL: str | None = None
    OPENAI_MODEL: str = "gpt-4o-mini"
    CARTESIA_API_KEY: SecretStr | None = None
    CARTESIA_VOICE: str = "a0e99841-438c-4a64-b679-ae501e7d6091"
    # API
    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(8000, ge=1, le=65535)
    API_TOKENS: SecretStr = Field(
        description="comma-separated token:role or name:token:role entries, "
        "roles supervisor|ops|admin|rep; a desk role may end with :skill+skill"
    )
    RATE_LIMIT_PER_MINUTE: int = Field(30, ge=1)
    MAX_WAITING_CALLS: int = Field(50, ge=1, description="calls waiting for their customer")
    MAX_CALLS_PER_CLIENT: int = Field(3, ge=1, description="live calls of one address (IPv6 /64)")
    MAX_LIVE_AI_CALLS: int = Field(
        100, ge=1, description="live calls started by customers, all together (each holds an agent)"
    )
    TRUSTED_PROXIES: str = Field(
        "", description="comma-separated addresses or networks whose X-Forwarded-For is believed"
    )
    WS_QUEUE_SIZE: int = Field(256, ge=8)
    CODEC_CORS_ORIGINS: str = "http://localhost:8233,http://127.0.0.1:8233"
    # production: settings refuse to load without PAYLOAD_KEYS (docker-compose sets it)
    CALLCENTER_ENV: DeploymentEnv = DeploymentEnv.DEVELOPMENT
    PAYLOAD_KEYS: SecretStr | None = Field(
        None,
        description="comma-separated key_id:base64(32 bytes) pairs, newest first",
        validate_default=True,
    )
    # None: on exactly when PAYLOAD_KEYS is set (see `require_encryption`)
    PAYLOAD_REQUIRE_ENCRYPTION: bool | None = None
    # Worker: its metrics port (Temporal SDK + product metrics); "" turns it off
    WORKER_METRICS_ADDRESS: str = "127.0.0.1:9464"
    # Dashboard sessions (server-side, in PostgreSQL; see api/sessions.py): how long one lasts,
    # whether it began at the identity provider or with an API token asking for a codec cookie.
    SESSION_TTL_S: int = Field(8 * 3600, ge=60, le=7 * 24 * 3600)
    # The organisation's OIDC identity provider. Its access tokens (the Temporal Web UI's, on
    # /codec) must name CODEC_OIDC_AUDIENCE; its ID tokens (dashboard sign-in) must name
    # DASHBOARD_OIDC_CLIENT_ID. Roles come from CODEC_OIDC_ROLES_CLAIM in both.
    CODEC_OIDC_ISSUER: str | None = Field(None, description="issuer (iss) of the UI's tokens")
    CODEC_OIDC_AUDIENCE: str | None = Field(
        None, description="audience (aud) the UI's tokens must name", validate_default=True
    )
    CODEC_OIDC_JWKS_URL: str | None = Field(
        None, description="default: the jwks_uri of the issuer's discovery document"
    )
    CODEC_OIDC_ROLES_CLAIM: str = "roles"  # a claim listing roles (admin, supervisor, ops, rep)
    DASHBOARD_OIDC_CLIENT_ID: str | None = Field(
        None,
        description="the dashboard's client id at CODEC_OIDC_ISSUER (turns on sign-in there)",
        validate_default=True,
    )
    DASHBOARD_OIDC_CLIENT_SECRET: SecretStr | None = None  # a confidential client's secret
    DASHBOARD_OIDC_REDIRECT_URL: str | None = Field(
        None, description="registered redirect URI, default <the API's origin>/auth/callback"
    )
    # Telephony (LiveKit SIP; `ops telephony setup` creates the trunks and the dispatch rule)
    SIP_INBOUND_NUMBERS: str = Field("", description="comma-separated E.164 numbers we answer")
    SIP_OUTBOUND_ADDRESS: str = Field("", description="the outbound SIP trunk's hostname")
    SIP_OUTBOUND_NUMBERS: str = Field(
        "", description="comma-separated E.164 caller ids we dial from (the first is used)"
    )
    SIP_OUTBOUND_USERNAME: str = ""
    SIP_OUTBOUND_PASSWORD: SecretStr | None = None
    SIP_OUTBOUND_ALLOWED_PREFIXES: str = Field(
        "", description="comma-separated number prefixes outbound calls may dial (none: no call)"
    )
    SIP_OUTBOUND_MAX_PER_HOUR: int = Field(20, ge=0, description="outbound calls an hour, in all")
    SIP_RINGING_TIMEOUT_S: float = Field(30, gt=0, le=600)
    # Callbacks (workflows/callback.py): the customer's local calling window, inside 08:00-21:00.
    CALLBACK_HOURS: str = Field("09:00-20:00", description="HH:MM-HH:MM, inside 08:00-21:00")
    CALLBACK_RETRY_S: float = Field(1800, gt=0, description="busy / no answer: again after this")
    CALLBACK_MAX_ATTEMPTS: int = Field(3, ge=1, le=10)
    RESERVED_INBOUND: int = Field(
        10, ge=0, description="of MAX_LIVE_AI_CALLS, kept free of campaign calls for inbound ones"
    )
    CAMPAIGN_MAX_NUMBERS: int = Field(10_000, ge=1, description="numbers in one campaign")
    CALLBACK_MAX_DAYS: int = Field(14, ge=1, le=90, description="how far ahead a callback may be")
    # Call policy (seconds)
    AGENT_JOIN_TIMEOUT_S: float = Field(60, gt=0)
    CUSTOMER_JOIN_TIMEOUT_S: float = Field(120, gt=0)
    # Dispatch healing: dispatch the agent again this long after a dispatch nobody answered.
    AGENT_REDISPATCH_AFTER_S: float = Field(10, gt=0)
    AGENT_DISPATCH_ATTEMPTS: int = Field(3, ge=1, le=10)
    # A customer whose connection drops may come back this long into the same call.
    CUSTOMER_REJOIN_GRACE_S: float = Field(30, ge=0)
    MAX_CALL_DURATION_S: float = Field(7200, gt=0)
    EGRESS_END_TIMEOUT_S: float = Field(600, gt=0)
    # A call that heard nothing from its room this long asks LiveKit who is in it (a lost
    # participant_left or room_finished webhook is found).
    ROOM_CHECK_AFTER_S: float = Field(120, gt=0)
    SILENCE_ALERT_S: float = Field(30, gt=0)
    # A call whose customer has said nothing this long is hung up (end reason `silent`); 0: never.
    SILENT_CALL_HANGUP_S: float = Field(180, ge=0)
    RECORDING_RETRY_FOR_S: float = Field(24 * 3600, gt=0)
    RECORDING_CONSENT: RecordingConsent = RecordingConsent.ANNOUNCE
    # Consent withdrawn mid-call: what was recorded until then is kept or deleted.
    RECORDING_ON_WITHDRAWAL: RecordingOnWithdrawal = RecordingOnWithdrawal.DELETE
    KEYWORD_ALERTS: str = "manager,lawyer,cancel"
    # After the call (workflows/analysis.py). `auto`: the language model when one is set.
    ANALYSIS_METHOD: Literal["auto", "llm", "local"] = "auto"
    ANALYSIS_LLM_BASE_URL: str | None = Field(None, description="OpenAI-compatible server")
    ANALYSIS_LLM_API_KEY: SecretStr | None = None
    ANALYSIS_LLM_MODEL: str = "gpt-4o-mini"
    ANALYSIS_LLM_TIMEOUT_S: float = Field(60, gt=0)
    ANALYSIS_SCHEMA: str | None = Field(None, description="JSON schema file of the fields")
    ANALYSIS_RUBRIC: str | None = Field(None, description="the scorecard's rubric (JSON)")
    # Lines the agent still sends after the hang-up (a resend from its spool) land first.
    ANALYSIS_DELAY_S: float = Field(10, ge=0)
    ANALYSIS_WEBHOOK_URL: str | None = None
    ANALYSIS_WEBHOOK_SECRET: SecretStr | None = Field(
        None, description="whsec_ and base64 (Standard Webhooks)"
    )
    ANALYSIS_WEBHOOK_TIMEOUT_S: float = Field(15, gt=0)
    ANALYSIS_WEBHOOK_FOR_S: float = Field(24 * 3600, gt=0)  # retried this long, then failed
    # The human desk (workflows/desk.py): an offer rings this long, then the next rep; after a
    # call a rep wraps up this long; a caller waits at most this long; answered within
    # DESK_SERVICE_LEVEL_S counts toward the service level.
    REP_OFFER_TIMEOUT_S: float = Field(20, gt=0, le=600)
    REP_WRAP_UP_S: float = Field(30, ge=0, le=3600)
    QUEUE_MAX_WAIT_S: float = Field(300, gt=0)
    DESK_SERVICE_LEVEL_S: float = Field(20, gt=0)

    @field_validator("SIP_INBOUND_NUMBERS", "SIP_OUTBOUND_NUMBERS")
    @classmethod
    def _e164_list(cls, v: str) -> str:
        from core.telephony import is_e164, split_list

        bad = [n for n in split_list(v) if not is_e164(n)]
        if bad:
            raise PydanticCustomError("e164", "each number must be E.164 (+ and 7 to 15 digits)")
        return v

    @field_validator("SIP_OUTBOUND_ALLOWED_PREFIXES")
    @classmethod
    def _prefixes(cls, v: str) -> str:
        from core.telephony import PREFIX, split_list

        if any(not PREFIX.match(p) for p in split_list(v)):
            raise PydanticCustomError("prefix", "each prefix must be + and up to 14 digits")
        return v

    @field_validator("CALLBACK_HOURS")
    @classmethod
    def _callback_hours(cls, v: str) -> str:
        from core.callbacks import Window

        try:
            Window.parse(v)
        except ValueError as exc:
            raise PydanticCustomError("window", str(exc)) from None
        return v

    @field_validator("LIVEKIT_URL", "LIVEKIT_PUBLIC_URL")
    @classmethod
    def _livekit_scheme(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with http://, https://, ws:// or wss://")
        return v

    @field_validator("EGRESS_S3_ENDPOINT", "MINIO_PUBLIC_URL")
    @classmethod
    def _egress_endpoint(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL, or empty for AWS S3")
        return v

    @field_validator("ANALYSIS_WEBHOOK_URL", "ANALYSIS_LLM_BASE_URL")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return v or None

    @field_validator("ANALYSIS_WEBHOOK_SECRET")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        try:
            key = base64.b64decode(
                v.get_secret_value().removeprefix("whsec_") + "==", validate=False
            )
        except ValueError:
            key = b""
        if len(key) < 16:
            raise ValueError("must be whsec_ and the base64 of at least 16 random bytes")
        return v

    @field_validator("TRUSTED_PROXIES")
    @classmethod
    def _proxy_networks(cls, v: str) -> str:
        parse_networks(v)
        return v

    @field_validator("MINIO_ENDPOINT")
    @classmethod
    def _no_scheme(cls, v: str) -> str:
        if "://" in v or not v:
            raise ValueError("must be host:port without a scheme")
        return v

    @field_validator("TEMPORAL_ADDRESS")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be host:port")
        return v

    @field_validator("WORKER_DEPLOYMENT_NAME")
    @classmethod
    def _deployment_name(cls, v: str) -> str:
        # Temporal joins name and build id with "." in a version's canonical string.
        if not _DEPLOYMENT_NAME.match(v):
            raise ValueError("must be 1-64 letters, digits, '-' or '_' (no '.')")
        return v

    @field_validator("WORKER_BUILD_ID", "PIN_NEW_CALLS_TO")
    @classmethod
    def _build_id(cls, v: str) -> str:
        if v and not BUILD_ID.match(v):
            raise ValueError("must be 1-128 letters, digits, '.', '-', '_' or '+', or empty")
        return v

    @field_validator("DATABASE_URL")
    @classmethod
    def _pg_url(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return v

    @field_validator("API_TOKENS")
    @classmethod
    def _tokens(cls, v: SecretStr) -> SecretStr:
        parse_api_token_entries(v.get_secret_value())
        return v

    @field_validator("PAYLOAD_KEYS")
    @classmethod
    def _keys(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is not None and v.get_secret_value().strip():
            parse_payload_keys(v.get_secret_value())
        elif info.data.get("CALLCENTER_ENV") == DeploymentEnv.PRODUCTION:
            raise PydanticCustomError(
                "required_in_production",
                "required with CALLCENTER_ENV=production: without it names, transcripts and "
                "failures sit in Temporal history in plaintext (a key: k1:$(openssl rand -base64 32))",
            )
        return v

    @field_validator("CODEC_OIDC_AUDIENCE", "DASHBOARD_OIDC_CLIENT_ID")
    @classmethod
    def _oidc_needs_issuer_and_audience(cls, v: str | None, info: ValidationInfo) -> str | None:
        issuer = info.data.get("CODEC_OIDC_ISSUER")
        if info.field_name == "CODEC_OIDC_AUDIENCE" and issuer and not (v and v.strip()):
            # Without an audience, any token the issuer signs for any application would pass.
            raise ValueError("must be set when CODEC_OIDC_ISSUER is (tokens must name us)")
        if info.field_name == "DASHBOARD_OIDC_CLIENT_ID" and v and not issuer:
            raise ValueError("is set but CODEC_OIDC_ISSUER (the identity provider) is not")
        return v.strip() if v else None

    @field_validator("PAYLOAD_REQUIRE_ENCRYPTION")
    @classmethod
    def _require_needs_keys(cls, v: bool | None, info: ValidationInfo) -> bool | None:
        keys = info.data.get("PAYLOAD_KEYS")
        if v and (keys is None or not keys.get_secret_value().strip()):
            raise ValueError("is true but PAYLOAD_KEYS is not set: nothing could be decrypted")
        return v

    # Derived views -------------------------------------------------------------------------
    @property
    def api_tokens(self) -> dict[str, str]:
        """token -> role."""
        return parse_api_tokens(self.API_TOKENS.get_secret_value())

    @property
    def api_token_entries(self) -> list[ApiToken]:
        """Every entry with its name (None when the entry has none)."""
        return parse_api_token_entries(self.API_TOKENS.get_secret_value())

    @property
    def payload_keys(self) -> list[tuple[str, bytes]]:
        """(key_id, 32-byte key), newest first; empty when encryption is off."""
        if self.PAYLOAD_KEYS is None or not self.PAYLOAD_KEYS.get_secret_value().strip():
            return []
        return parse_payload_keys(self.PAYLOAD_KEYS.get_secret_value())

    @property
    def recording_source_hosts(self) -> frozenset[str]:
        """Lower-case host[:port] entries an http(s) egress location may be fetched from."""
        return frozenset(
            h.strip().lower() for h in self.RECORDING_SOURCE_HOSTS.split(",") if h.strip()
        )

    @property
    def egress_bucket(self) -> str:
        """EGRESS_BUCKET under the name other modules use (the staging bucket Egress uploads to)."""
        return self.EGRESS_BUCKET

    @property
    def livekit_public_url(self) -> str:
        """The LiveKit URL handed to browsers (LIVEKIT_PUBLIC_URL, else LIVEKIT_URL)."""
        return self.LIVEKIT_PUBLIC_URL or self.LIVEKIT_URL

    @property
    def egress_s3_endpoint(self) -> str:
        """The endpoint URL Egress is told to upload to ("" for AWS's own)."""
        if self.EGRESS_S3_ENDPOINT:
            return self.EGRESS_S3_ENDPOINT.rstrip("/")
        if self.MINIO_ENDPOINT.endswith("amazonaws.com"):
            return ""
        return f"{'https' if self.MINIO_SECURE else 'http'}://{self.MINIO_ENDPOINT}"

    @property
    def require_encryption(self) -> bool:
        """Whether the codec refuses unencrypted payloads: on by default when keys are set."""
        if self.PAYLOAD_REQUIRE_ENCRYPTION is None:
            return bool(self.payload_keys)
        return self.PAYLOAD_REQUIRE_ENCRYPTION

    @property
    def sip_inbound_numbers(self) -> list[str]:
        from core.telephony import split_list

        return split_list(self.SIP_INBOUND_NUMBERS)

    @property
    def sip_outbound_numbers(self) -> list[str]:
        from core.telephony import split_list

        return split_list(self.SIP_OUTBOUND_NUMBERS)

    @property
    def sip_allowed_prefixes(self) -> list[str]:
        from core.telephony import split_list

        return split_list(self.SIP_OUTBOUND_ALLOWED_PREFIXES)

    @property
    def trusted_proxies(self) -> tuple[Network, ...]:
        return parse_networks(self.TRUSTED_PROXIES)

    @property
    def keywords(self) -> list[str]:
        return [k.strip().lower() for k in self.KEYWORD_ALERTS.split(",") if k.strip()]

    @property
    def worker_version(self) -> WorkerDeploymentVersion | None:
        """The Worker Deployment Version this worker polls as; None: an unversioned worker."""
        if not self.WORKER_BUILD_ID:
            return None
        return WorkerDeploymentVersion(self.WORKER_DEPLOYMENT_NAME, self.WORKER_BUILD_ID)

    @property
    def new_calls_pinned_to(self) -> WorkerDeploymentVersion | None:
        """The version the API pins new calls to at start (PIN_NEW_CALLS_TO), or None: the
        Deployment's Current Version decides (or, unversioned, any worker)."""
        if not self.PIN_NEW_CALLS_TO:
            return None
        return WorkerDeploymentVersion(self.WORKER_DEPLOYMENT_NAME, self.PIN_NEW_CALLS_TO)

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL.get_secret_value()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """Comma-separated addresses or networks (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`)."""
    found = []
    for entry in (e.strip() for e in raw.split(",") if e.strip()):
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network") from None
    return tuple(found)


def parse_api_token_entries(raw: str) -> list[ApiToken]:
    """`token:role` or `name:token:role` entries, comma-separated; a desk role (rep,
    supervisor, admin) may add `:skill+skill` (`ann:<token>:rep:sales+service`; without it,
    the skill `general`). Messages never quote a token."""
    entries: list[ApiToken] = []
    names: set[str] = set()
    tokens: set[str] = set()
    for i, entry in enumerate(p.strip() for p in raw.split(",") if p.strip()):
        parts = entry.split(":")
        skills: tuple[str, ...] = ()
        if len(parts) == 2:
            name, (token, role) = None, parts
        elif len(parts) == 3:
            name, token, role = parts
        elif len(parts) == 4:
            name, token, role, listed = parts
            skills = tuple(sorted({s.strip() for s in listed.split("+") if s.strip()}))
            if role not in DESK_ROLES:
                raise ValueError(f"entry {i + 1} lists skills but role {role!r} takes no calls")
            if not skills or not all(_SKILL.match(s) for s in skills):
                raise ValueError(
                    f"entry {i + 1} has skills that are not skill+skill "
                    "(each a-z first, then a-z 0-9 _ -, up to 32)"
                )
        else:
            raise ValueError(
                f"entry {i + 1} is not token:role, name:token:role or name:token:role:skill+skill"
            )
        if role not in ROLES:
            raise ValueError(f"entry {i + 1} has role {role!r}; roles are {', '.join(ROLES)}")
        if role in DESK_ROLES and not skills:
            skills = ("general",)
        if len(token) < 16:
            raise ValueError(f"entry {i + 1} has a token shorter than 16 characters")
        if not _TOKEN_CHARS.match(token):
            raise ValueError(
                f"entry {i + 1} has a token with a character a WebSocket subprotocol cannot carry "
                "(use letters, digits and -._~+)"
            )
        if name is not None:
            if not _TOKEN_NAME.match(name):
                raise ValueError(
                    f"entry {i + 1} has a name that is not 1-64 of letters, digits and _.@-"
                )
            if name in names:
                raise ValueError(f"entry {i + 1} repeats the name {name!r}")
            names.add(name)
        if token in tokens:
            raise ValueError(f"entry {i + 1} repeats the token of an earlier entry")
        tokens.add(token)
        entries.append(ApiToken(name, token, role, skills))
    if not entries:
        raise ValueError("needs at least one token:role pair")
    return entries


def parse_api_tokens(raw: str) -> dict[str, str]:
    """token -> role (see `parse_api_token_entries`)."""
    return {e.token: e.role for e in parse_api_token_entries(raw)}


def parse_payload_keys(raw: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for i, pair in enumerate(p.strip() for p in raw.split(",") if p.strip()):
        kid, sep, b64 = pair.partition(":")
        if not sep or not kid:
            raise ValueError(f"entry {i + 1} is not key_id:base64key")
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError:
            raise ValueError(f"entry {i + 1} ({kid}) is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"entry {i + 1} ({kid}) must decode to 32 bytes, got {len(key)}")
        keys.append((kid, key))
    return keys


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise `SettingsError` naming every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            field = Settings.model_fields.get(name)
            if err["type"] == "missing":
                what = field.description if field and field.description else "a value"
                lines.append(f"{name} is not set: expected {what}")
            elif err["type"] == "required_in_production":
                lines.append(f"{name} is not set: {err['msg']}")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(f"{name} is malformed: {msg}")
        raise SettingsError(
            "invalid settings (environment, .env or .devstack/env):\n  " + "\n  ".join(lines)
        ) from None


def settings_or_exit(**overrides: Any) -> Settings:
    """For process entry points: print the problem and exit 2 instead of a traceback."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        import sys

        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def env_flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in ("1", "true", "yes", "on")
