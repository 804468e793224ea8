"""The agent's configuration: the shared `Settings` plus a few agent-only variables.

`load_agent_config()` is what the worker calls at start-up: it raises `SettingsError` naming
every missing key (Deepgram, OpenAI, Cartesia) so the worker never starts half-able to talk.
Agent-only variables are read from the same places as `Settings` (environment, `.devstack/env`,
`.env`); their names are the field names below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import DEVSTACK_ENV, RecordingConsent, Settings, SettingsError, load_settings

TurnDetection = Literal["local", "vad", "stt"]


class AgentEnv(BaseSettings):
    """Variables only the agent reads. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=(str(DEVSTACK_ENV), ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        hide_input_in_errors=True,
    )

    # Where final lines (stored) and interim lines (live only) go: the API's internal endpoints.
    API_URL: str | None = Field(
        None, description="base URL of the API (default http://API_HOST:API_PORT)"
    )
    AGENT_STT_MODEL: str = "nova-3"
    AGENT_LANGUAGE: str = "en-US"
    AGENT_TTS_MODEL: str = "sonic-3"
    # Secondaries behind each FallbackAdapter (empty: none). `openai` uses OPENAI_API_KEY.
    AGENT_STT_FALLBACK: Literal["", "openai"] = ""
    AGENT_STT_FALLBACK_MODEL: str = "gpt-4o-mini-transcribe"
    AGENT_TTS_FALLBACK: Literal["", "openai"] = ""
    AGENT_TTS_FALLBACK_MODEL: str = "gpt-4o-mini-tts"
    AGENT_TTS_FALLBACK_VOICE: str = "alloy"
    # A second OpenAI-compatible model (and server, default the primary's) for the LLM.
    AGENT_LLM_FALLBACK_MODEL: str = ""
    AGENT_LLM_FALLBACK_BASE_URL: str | None = None
    # local = LiveKit's turn-detector-v1-mini, whose weights ship in livekit-local-inference.
    AGENT_TURN_DETECTION: TurnDetection = "local"
    AGENT_TIMEZONE: str = "America/New_York"
    AGENT_SIGNAL_QUEUE_MAX: int = Field(5000, ge=10)
    AGENT_FLUSH_TIMEOUT_S: float = Field(45.0, gt=0)
    # Final lines are written ahead here until the API stored them, and signals still
    # undelivered when a job ends wait here for the next job (customer data: 0600).
    AGENT_SPOOL_DIR: str = "/var/tmp/callcenter-agent-spool"
    # How long a customer's final line may wait for the assistant's reply to share its signal to
    # the workflow (a turn a signal: fewer history events). Only the workflow waits: the line
    # goes to the API, the dashboard and its keyword alert at once. 0: a signal a line.
    AGENT_TURN_COALESCE_S: float = Field(6.0, ge=0)
    AGENT_HTTP_PORT: int = Field(8081, ge=0, le=65535)
    # Prometheus `/metrics` of the worker (per-turn latency histograms); 0 turns it off. Not
    # 9464: that is the Temporal worker's (WORKER_METRICS_ADDRESS), on the same host in devstack.
    AGENT_PROMETHEUS_PORT: int = Field(9465, ge=0, le=65535)
    AGENT_PROMETHEUS_DIR: str = "/tmp/callcenter-agent-prometheus"

    @field_validator("AGENT_TIMEZONE")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name, e.g. America/New_York)"
            ) from None
        return v


@dataclass(frozen=True)
class AgentConfig:
    """Everything the worker and a call need, validated once per process."""

    settings: Settings
    env: AgentEnv

    @property
    def agent_name(self) -> str:
        return self.settings.AGENT_NAME

    @property
    def recording_consent(self) -> RecordingConsent:
        return self.settings.RECORDING_CONSENT

    @property
    def silence_after_s(self) -> float:
        return self.settings.SILENCE_ALERT_S

    @property
    def api_url(self) -> str:
        return (
            self.env.API_URL or f"http://{self.settings.API_HOST}:{self.settings.API_PORT}"
        ).rstrip("/")

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.env.AGENT_TIMEZONE)

    def secret(self, name: str) -> str:
        """The value of a key checked by `missing_agent_keys` (empty if absent)."""
        value = getattr(self.settings, name)
        return value.get_secret_value() if value is not None else ""


# What each key is for, so the start-up message tells an operator what breaks without it.
_KEY_PURPOSE = {
    "DEEPGRAM_API_KEY": "speech-to-text (Deepgram)",
    "OPENAI_API_KEY": "the language model (OpenAI, or set OPENAI_BASE_URL for a local server)",
    "CARTESIA_API_KEY": "text-to-speech (Cartesia)",
}


def missing_agent_keys(settings: Settings) -> list[str]:
    """Names of the cloud keys the agent cannot work without; empty when all are set.

    OPENAI_API_KEY may be left out when OPENAI_BASE_URL points at a local OpenAI-compatible
    server (those ignore the key).
    """
    missing = []
    for name in _KEY_PURPOSE:
        value = getattr(settings, name)
        if name == "OPENAI_API_KEY" and settings.OPENAI_BASE_URL:
            continue
        if value is None or not value.get_secret_value().strip():
            missing.append(name)
    return missing


def load_agent_config(settings: Settings | None = None, **env_overrides: object) -> AgentConfig:
    """Validate the shared settings, the agent's keys and its own variables.

    Raises `SettingsError` whose message names each missing or malformed variable.
    """
    settings = settings if settings is not None else load_settings()
    problems = [
        f"{name} is not set: the agent needs it for {_KEY_PURPOSE[name]}"
        for name in missing_agent_keys(settings)
    ]
    env: AgentEnv | None = None
    try:
        env = AgentEnv(**env_overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{name} is malformed: {err['msg'].removeprefix('Value error, ')}")
    if problems or env is None:
        raise SettingsError("the agent cannot start:\n  " + "\n  ".join(problems))
    return AgentConfig(settings=settings, env=env)


@functools.cache
def process_config() -> AgentConfig:
    """The config of this process, loaded once (job processes inherit the same environment)."""
    return load_agent_config()
