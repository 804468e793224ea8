"""The post-call report: one JSON document per call, built from the call's row, its event log,
its stored recording segments, the test drives its tools booked, its analysis (summary, outcome,
sentiment, fields, scorecard, deliveries) and (when Temporal can say) the workflow's own result. Pure: the route gathers the inputs, this shapes them.

Latency figures are read from `agent_metrics` events generically: every number under a key ending
in `_s` (and every number in a nested `figures` map) is one labelled figure in seconds, so new
per-turn metrics show up without a change here.
"""

from __future__ import annotations

import math
from typing import Any

from core.models import EventKind as K

# Figure names (a key minus its `_s` unit suffix) as supervisors read them.
LABELS = {
    "stt_delay": "STT delay",
    "end_of_utterance_delay": "End of utterance",
    "transcription_delay": "Transcription delay",
    "time_to_first_token": "LLM time to first token",
    "llm_ttft": "LLM time to first token",
    "tts_ttfb": "TTS time to first byte",
    "time_to_first_audio": "TTS time to first byte",
    "end_to_end_latency": "End to end (customer waits)",
    "end_to_end": "End to end",
    "e2e": "End to end",
}
ALERT_KINDS = (K.SILENCE_ALERT, K.KEYWORD_ALERT, K.HANDOFF_REQUESTED, K.AGENT_ALERT)
# Events that are the outcome of one of Sarah's tools (the tools' own rows are added apart).
TOOL_KINDS = (K.HANDOFF_REQUESTED,)


def label(key: str) -> str:
    base = key.removesuffix("_s")
    if base in LABELS:
        return LABELS[base]
    name = base.replace("_", " ")
    return name[:1].upper() + name[1:]


def turn_figures(data: dict[str, Any]) -> dict[str, float]:
    """The labelled figures (seconds) of one `agent_metrics` event."""
    out: dict[str, float] = {}
    nested = data.get("figures")
    items = list(data.items()) + (list(nested.items()) if isinstance(nested, dict) else [])
    for key, value in items:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            continue
        if key.endswith("_s") or nested is not None and key in nested:
            out[key] = float(value)
    return out


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-turn figures and, per figure, count, p50, p95 and max (seconds)."""
    turns = []
    for e in events:
        if e["type"] == K.AGENT_METRICS:
            figures = turn_figures(e["data"])
            if figures:
                turns.append({"seq": e["seq"], "at": e["at"], "figures": figures})
    series: dict[str, list[float]] = {}
    for t in turns:
        for key, value in t["figures"].items():
            series.setdefault(key, []).append(value)
    summary = {
        key: {
            "label": label(key),
            "count": len(vals),
            "p50_s": percentile(vals, 50),
            "p95_s": percentile(vals, 95),
            "max_s": max(vals),
        }
        for key, vals in series.items()
    }
    return {"turns": turns, "summary": summary}


def build_report(
    call: dict[str, Any],
    events: list[dict[str, Any]],
    segments: list[dict[str, Any]],
    test_drives: list[dict[str, Any]],
    workflow: dict[str, Any],
    analysis: dict[str, Any] | None = None,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document (see `api.schemas.CallReport`). A line's `id` is what the analysis's
    evidence and turning points cite."""
    transcript = [
        {
            "seq": e["seq"],
            "id": str(e["data"].get("id") or e["seq"]),
            "at": e["at"],
            "speaker": e["data"].get("speaker"),
            "text": e["data"].get("text"),
            "started_at": e["data"].get("started_at") or None,
            "confidence": e["data"].get("confidence"),
            "interrupted": bool(e["data"].get("interrupted")),
        }
        for e in events
        if e["type"] == K.FINAL_TRANSCRIPT
    ]
    alerts = [
        {"seq": e["seq"], "at": e["at"], "kind": e["type"], "data": e["data"]}
        for e in events
        if e["type"] in ALERT_KINDS
    ]
    actions = [
        {
            "seq": e["seq"],
            "at": e["at"],
            "action": e["data"].get("action"),
            "by": e["data"].get("by"),
            "detail": e["data"].get("detail") or None,
            "reason": e["data"].get("reason") or None,
        }
        for e in events
        if e["type"] == K.SUPERVISOR_ACTION
    ]
    tools: list[dict[str, Any]] = [
        {"tool": "request_handoff", "at": e["at"], "seq": e["seq"], "detail": e["data"]}
        for e in events
        if e["type"] in TOOL_KINDS
    ]
    tools += [
        {"tool": "recording_consent", "at": e["at"], "seq": e["seq"], "detail": e["data"]}
        for e in events
        if e["type"] == K.RECORDING and "consent" in e["data"]
    ]
    tools += [
        {"tool": "book_test_drive", "at": d["created_at"], "seq": None, "detail": d}
        for d in test_drives
    ]
    tools.sort(key=lambda t: t["at"] or "")
    statuses = [
        {"seq": e["seq"], "at": e["at"], "status": e["data"].get("status"),
         "reason": e["data"].get("reason")}
        for e in events
        if e["type"] == K.STATUS
    ]  # fmt: skip
    return {
        "call_id": call["call_id"],
        "call": call,
        "workflow": workflow,
        "transcript": transcript,
        "alerts": alerts,
        "supervisor_actions": actions,
        "tool_calls": tools,
        "status_history": statuses,
        "latency": latency(events),
        "recording": {
            "status": call["recording_status"],
            "segments": [
                {
                    k: s[k]
                    for k in (
                        "object_key",
                        "size_bytes",
                        "duration_s",
                        "sha256",
                        "incomplete",
                        "started_at",
                        "clock",
                    )
                }
                for s in segments
            ],  # fmt: skip
        },
        "analysis": analysis,
        "links": links or {"callback_of": None, "called_back_in": []},
        "events": len(events),
    }
