"""Start-up: missing keys stop the worker with a message naming them; the models are built as
configured without touching the network; a job finds its call."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from livekit.agents import inference
from livekit.protocol import agent as agent_proto
from livekit.protocol import models as lk_models

from agent.config import AgentConfig, load_agent_config, missing_agent_keys
from agent.plugins import build_llm, build_stt, build_tts, build_turn_handling, load_vad
from agent.worker import build_server, call_id_for_job
from core.settings import ROOT, Settings, SettingsError

KEYS = {
    "DEEPGRAM_API_KEY": "dg-test-key",
    "OPENAI_API_KEY": "sk-test-key",
    "CARTESIA_API_KEY": "cartesia-test-key",
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Any attempt to resolve or connect fails the test (and is recorded)."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError(f"network used during construction: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts
    assert attempts == []


def test_each_missing_key_is_named(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError) as err:
        load_agent_config(make_settings())
    message = str(err.value)
    for name in KEYS:
        assert f"{name} is not set" in message
    assert "Deepgram" in message and "Cartesia" in message

    for name in KEYS:
        others = {k: v for k, v in KEYS.items() if k != name}
        with pytest.raises(SettingsError) as one:
            load_agent_config(make_settings(**others))
        assert name in str(one.value)
        assert not any(other in str(one.value) for other in others)
        assert all(v not in str(one.value) for v in others.values())  # no secret echoed


def test_a_local_openai_compatible_server_needs_no_key(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        DEEPGRAM_API_KEY="dg", CARTESIA_API_KEY="ca", OPENAI_BASE_URL="http://127.0.0.1:11434/v1"
    )
    assert missing_agent_keys(settings) == []
    assert load_agent_config(settings).secret("OPENAI_API_KEY") == ""


def test_agent_only_variables_are_validated(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError) as err:
        load_agent_config(
            make_settings(**KEYS),
            AGENT_TIMEZONE="Mars/Olympus_Mons",
            AGENT_TURN_DETECTION="psychic",
        )
    assert "AGENT_TIMEZONE is malformed" in str(err.value)
    assert "AGENT_TURN_DETECTION is malformed" in str(err.value)


def test_worker_refuses_to_start_without_keys() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in KEYS},
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
        "MINIO_ENDPOINT": "127.0.0.1:1",
        "MINIO_ACCESS_KEY": "x",
        "MINIO_SECRET_KEY": "y",
        "LIVEKIT_URL": "ws://127.0.0.1:1",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "devsecret-devsecret-devsecret-0123",
        "API_TOKENS": "test-admin-token-0123456789:admin",
        # explicit empties beat any .devstack/env or .env in the working tree
        "DEEPGRAM_API_KEY": "",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "CARTESIA_API_KEY": "sk-set",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "start"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "DEEPGRAM_API_KEY is not set" in proc.stderr
    assert "OPENAI_API_KEY is not set" in proc.stderr
    assert "CARTESIA_API_KEY" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def cfg(make_settings: Callable[..., Settings]) -> AgentConfig:
    settings = make_settings(
        **KEYS,
        OPENAI_MODEL="gpt-4o-mini",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        CARTESIA_VOICE="794f9389-aac1-45b6-b726-9d9369183238",
        AGENT_NAME="sarah-test",
    )
    return load_agent_config(
        settings, _env_file=None, AGENT_STT_MODEL="nova-3", AGENT_TTS_MODEL="sonic-2"
    )


def test_plugins_are_built_as_configured_offline(cfg: AgentConfig, no_network: list[Any]) -> None:
    stt = build_stt(cfg)
    (primary_stt,) = stt._stt_instances  # behind a FallbackAdapter even without a secondary
    assert primary_stt.model == "nova-3" and primary_stt.provider.lower().startswith("deepgram")
    llm = build_llm(cfg)
    (primary_llm,) = llm._llm_instances
    assert primary_llm.model == "gpt-4o-mini"
    assert str(primary_llm._client.base_url).startswith("http://127.0.0.1:9/v1")
    tts = build_tts(cfg)
    (primary_tts,) = tts._tts_instances
    assert primary_tts.model == "sonic-2"
    assert primary_tts._opts.voice == "794f9389-aac1-45b6-b726-9d9369183238"
    turn = build_turn_handling(cfg)
    detector = turn["turn_detection"]
    assert isinstance(detector, inference.TurnDetector)
    assert detector.model == "turn-detector-v1-mini"  # local weights, not the cloud model
    assert "endpointing" not in turn  # the detector's own defaults
    assert turn["interruption"]["mode"] == "vad"  # pinned: dev and start alike


def test_secondaries_sit_behind_the_primaries(
    make_settings: Callable[..., Settings], no_network: list[Any]
) -> None:
    settings = make_settings(**KEYS, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    cfg = load_agent_config(
        settings,
        _env_file=None,
        AGENT_STT_FALLBACK="openai",
        AGENT_TTS_FALLBACK="openai",
        AGENT_LLM_FALLBACK_MODEL="backup-model",
        AGENT_LLM_FALLBACK_BASE_URL="http://127.0.0.1:10/v1",
    )
    stt = build_stt(cfg, load_vad())
    assert [s.provider.lower()[:8] for s in stt._stt_instances][0] == "deepgram"
    assert len(stt._stt_instances) == 2  # the second wrapped for streaming by the VAD
    llm = build_llm(cfg)
    assert [m.model for m in llm._llm_instances] == ["gpt-4o-mini", "backup-model"]
    assert str(llm._llm_instances[1]._client.base_url).startswith("http://127.0.0.1:10/v1")
    tts = build_tts(cfg)
    assert type(tts._tts_instances[1]).__module__.startswith("livekit.plugins.openai")


def test_local_models_load_from_the_wheels(no_network: list[Any]) -> None:
    import numpy as np
    from livekit.local_inference import EOT

    vad = load_vad()
    assert vad.capabilities is not None
    with EOT() as eot:
        assert 0.0 <= eot.predict(np.zeros(16000, dtype=np.int16)) <= 1.0


def test_server_uses_explicit_dispatch_under_the_agent_name(cfg: AgentConfig) -> None:
    server = build_server(cfg)
    assert server._agent_name == "sarah-test"  # no public accessor; empty would mean auto-dispatch


def _job(room: str, job_meta: str = "", room_meta: str = "") -> agent_proto.Job:
    return agent_proto.Job(
        id="J", room=lk_models.Room(name=room, metadata=room_meta), metadata=job_meta
    )


def test_a_job_finds_its_call() -> None:
    call = "a1b2c3d4e5f6a7b8c9d0"
    assert call_id_for_job(_job(f"call-{call}")) == call
    assert call_id_for_job(_job("lobby", job_meta=json.dumps({"call_id": call}))) == call
    assert call_id_for_job(_job("lobby", room_meta=json.dumps({"call_id": call}))) == call
    other = "ffffffffffffffffffff"
    assert call_id_for_job(_job(f"call-{call}", job_meta=json.dumps({"call_id": other}))) == call
    assert call_id_for_job(_job("lobby", job_meta="not json")) is None
    assert call_id_for_job(_job("lobby", job_meta=json.dumps({"call_id": "../etc"}))) is None


def test_turn_figures_reach_the_prometheus_histograms(cfg: AgentConfig) -> None:
    from prometheus_client import REGISTRY

    from agent.metrics import observe
    from core.models import AgentMetrics

    def count(name: str) -> float:
        return REGISTRY.get_sample_value(f"callcenter_agent_{name}_seconds_count") or 0.0

    before = {n: count(n) for n in ("stt_delay", "llm_ttft", "tts_ttfb", "end_to_end_latency")}
    observe(
        AgentMetrics("m1", time_to_first_token_s=0.3, stt_delay_s=0.2, end_to_end_latency_s=1.1)
    )
    assert count("stt_delay") == before["stt_delay"] + 1
    assert count("llm_ttft") == before["llm_ttft"] + 1
    assert count("end_to_end_latency") == before["end_to_end_latency"] + 1
    assert count("tts_ttfb") == before["tts_ttfb"]  # a figure the turn lacks is not made up
    server = build_server(cfg)
    assert server._prometheus_port == cfg.env.AGENT_PROMETHEUS_PORT
    assert server._prometheus_multiproc_dir


def test_agent_and_worker_metrics_ports_differ_by_default() -> None:
    """devstack runs the agent and the Temporal worker on one host with their defaults: the
    second to bind its metrics port would lose it."""
    from agent.config import AgentEnv
    from core.settings import Settings

    worker_port = int(Settings.model_fields["WORKER_METRICS_ADDRESS"].default.rpartition(":")[2])
    assert AgentEnv.model_fields["AGENT_PROMETHEUS_PORT"].default not in (0, worker_port)


def test_a_late_second_agent_stands_down() -> None:
    from types import SimpleNamespace

    from livekit import rtc

    from agent.worker import serving_agent

    def room(*kinds: int) -> Any:
        people = {f"p{i}": SimpleNamespace(identity=f"p{i}", kind=k) for i, k in enumerate(kinds)}
        return SimpleNamespace(remote_participants=people)

    agent, customer = (
        rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
        rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    )
    assert serving_agent(room(customer)) is None
    assert serving_agent(room(customer, agent)) == "p1"
