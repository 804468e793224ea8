"""Per-turn latency histograms of the agent worker, served on its Prometheus port.

`AGENT_PROMETHEUS_PORT` (default 9465, beside the Temporal worker's 9464; 0 = off) is handed to livekit-agents' `AgentServer`,
which serves `/metrics` in the worker process and collects the job processes' samples through
prometheus_client's multiprocess mode (`AGENT_PROMETHEUS_DIR`). Each figure is the one the
call's workflow and dashboard get for the turn (`core.models.AgentMetrics`).
"""

from __future__ import annotations

from prometheus_client import Histogram

from core.models import AgentMetrics

# Voice turns: tens of milliseconds to a few seconds.
_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

HISTOGRAMS = {
    "stt_delay_s": Histogram(
        "callcenter_agent_stt_delay_seconds",
        "End of the customer's speech to the final transcript",
        buckets=_BUCKETS,
    ),
    "end_of_utterance_delay_s": Histogram(
        "callcenter_agent_end_of_utterance_delay_seconds",
        "End of the customer's speech to the turn being judged over",
        buckets=_BUCKETS,
    ),
    "time_to_first_token_s": Histogram(
        "callcenter_agent_llm_ttft_seconds", "LLM time to first token", buckets=_BUCKETS
    ),
    "time_to_first_audio_s": Histogram(
        "callcenter_agent_tts_ttfb_seconds", "TTS time to first byte of audio", buckets=_BUCKETS
    ),
    "end_to_end_latency_s": Histogram(
        "callcenter_agent_end_to_end_latency_seconds",
        "End of the customer's speech to Sarah starting to answer",
        buckets=_BUCKETS,
    ),
}


def observe(turn: AgentMetrics) -> None:
    """Adds one turn's figures (those it has) to the histograms."""
    for field, histogram in HISTOGRAMS.items():
        value = getattr(turn, field)
        if value is not None:
            histogram.observe(value)
