"""The emulator's configuration: one dataclass, filled from the environment or by a caller."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 7880
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/livekit"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass
class EmulatorConfig:
    """How one emulator runs.

    `port=0` binds a free port (the running handle's `.url` tells which). `public_url` is the
    base written into recording locations; empty means `http://<host>:<port>` (127.0.0.1 when
    bound to all interfaces). `webhook_url` empty disables webhooks; it can also be changed at
    run time through `POST /_emulator/webhook`. `recordings_dir` empty means a temporary
    directory removed on stop.

    Uploads are Egress's: to the request's `S3Upload`, else to the default storage `s3_*` (as
    egress.yaml's `storage.s3`), else the file stays local (location = its path, as Egress's
    local storage reports). `backup_bucket` is Egress's backup storage (same endpoint and
    credentials) used when the primary upload fails. `serve_recordings` is a debug flag: the
    emulator then also serves each file over its own HTTP and reports that URL when no storage
    is configured (what the emulator did before it uploaded).
    """

    api_key: str
    api_secret: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    webhook_url: str = DEFAULT_WEBHOOK_URL
    auto_agent: bool = True
    auto_agent_delay_s: float = 0.5
    public_url: str = ""
    recordings_dir: str = ""
    # STARTING -> ACTIVE takes this long, as a real egress needs a moment to start its pipeline.
    egress_start_delay_s: float = 0.1
    # An outbound INVITE is answered 180 Ringing this long after the participant joined.
    sip_dial_delay_s: float = 0.1
    webhook_retries: int = 3
    webhook_backoff_s: float = 0.5
    webhook_timeout_s: float = 5.0
    serve_recordings: bool = False
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_access_key: str = ""
    s3_secret: str = ""
    s3_region: str = "us-east-1"
    s3_force_path_style: bool = True
    backup_bucket: str = ""

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError("LIVEKIT_API_KEY is required (the API key tokens are signed with)")
        if not self.api_secret:
            raise ConfigError("LIVEKIT_API_SECRET is required (the secret tokens are signed with)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"LIVEKIT_EMULATOR_PORT must be 0..65535, got {self.port}")
        for name in ("auto_agent_delay_s", "egress_start_delay_s", "sip_dial_delay_s",
                     "webhook_backoff_s"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.webhook_retries < 0:
            raise ConfigError("webhook_retries must not be negative")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> EmulatorConfig:
        """Read LIVEKIT_API_KEY, LIVEKIT_API_SECRET, LIVEKIT_WEBHOOK_URL and the
        LIVEKIT_EMULATOR_* variables (HOST, PORT, PUBLIC_URL, AUTO_AGENT, AUTO_AGENT_DELAY,
        RECORDINGS_DIR, SERVE_RECORDINGS, S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET,
        S3_REGION, BACKUP_BUCKET); keyword overrides (field names) win over the environment."""
        e = os.environ if env is None else env
        values: dict[str, object] = {
            "api_key": e.get("LIVEKIT_API_KEY", ""),
            "api_secret": e.get("LIVEKIT_API_SECRET", ""),
            "host": e.get("LIVEKIT_EMULATOR_HOST", "127.0.0.1"),
            "port": _int(e, "LIVEKIT_EMULATOR_PORT", DEFAULT_PORT),
            "webhook_url": e.get("LIVEKIT_WEBHOOK_URL", DEFAULT_WEBHOOK_URL),
            "auto_agent": _bool(e, "LIVEKIT_EMULATOR_AUTO_AGENT", True),
            "auto_agent_delay_s": _float(e, "LIVEKIT_EMULATOR_AUTO_AGENT_DELAY", 0.5),
            "public_url": e.get("LIVEKIT_EMULATOR_PUBLIC_URL", ""),
            "recordings_dir": e.get("LIVEKIT_EMULATOR_RECORDINGS_DIR", ""),
            "serve_recordings": _bool(e, "LIVEKIT_EMULATOR_SERVE_RECORDINGS", False),
            "s3_endpoint": e.get("LIVEKIT_EMULATOR_S3_ENDPOINT", ""),
            "s3_bucket": e.get("LIVEKIT_EMULATOR_S3_BUCKET", ""),
            "s3_access_key": e.get("LIVEKIT_EMULATOR_S3_ACCESS_KEY", ""),
            "s3_secret": e.get("LIVEKIT_EMULATOR_S3_SECRET", ""),
            "s3_region": e.get("LIVEKIT_EMULATOR_S3_REGION", "us-east-1"),
            "backup_bucket": e.get("LIVEKIT_EMULATOR_BACKUP_BUCKET", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def base_url(self, bound_port: int) -> str:
        """The URL recording locations start with, given the port actually bound."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{bound_port}"

    def recordings_path(self) -> Path | None:
        return Path(self.recordings_dir) if self.recordings_dir else None


def _int(env: dict[str, str] | os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str] | os._Environ[str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def _bool(env: dict[str, str] | os._Environ[str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
