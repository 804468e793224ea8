"""What a call came to: summary, outcome, sentiment, the fields the business needs and a QA
scorecard. Pure: `activities/analysis.py` reads the call from PostgreSQL, asks a language model
or runs `analyze_locally`, checks the document with `check` and stores it.

Two methods, and every document says which made it (`method`):
- `llm`: an OpenAI-compatible model answers with JSON under `document_schema` (structured
  output); `check` refuses a document that does not match it or cites a line the call never had.
- `local`: no model. Sentiment from VADER's lexicon (`nltk-vader-sentiment`, made for short
  conversational text, its data in the wheel); fields from what the tools recorded (the test drive
  booked, its vehicle); the summary quotes the call's own lines, never a word it did not say;
  scorecard items the lexicon cannot judge are `passed: null`, not guessed.

The fields are described by a JSON schema the deployment configures (`ANALYSIS_SCHEMA`), the
scorecard by a rubric (`ANALYSIS_RUBRIC`); the dealership's ship in `core/analysis_data/`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

DATA = Path(__file__).resolve().parent / "analysis_data"
DEFAULT_SCHEMA = DATA / "dealership.schema.json"
DEFAULT_RUBRIC = DATA / "dealership.rubric.json"
OUTCOMES = ("resolved", "follow_up", "handed_off", "abandoned")
SENTIMENTS = ("negative", "neutral", "positive")
# VADER's own thresholds on its compound score (Hutto & Gilbert, 2014).
POSITIVE_AT, NEGATIVE_AT = 0.05, -0.05
TURN_SWING = 0.5  # a change of the customer's mood this large between two lines is a turning point
QUOTE_CHARS = 200


@dataclass
class Line:
    id: str
    seq: int
    speaker: str
    text: str


@dataclass
class Conversation:
    """What the analysis reads of one call (from PostgreSQL)."""

    call_id: str
    lines: list[Line]
    end_reason: str = ""
    handoffs: list[dict[str, Any]] = field(default_factory=list)  # handoff_requested events
    test_drives: list[dict[str, Any]] = field(default_factory=list)  # with the vehicle's fields

    def said_by(self, *speakers: str) -> list[Line]:
        return [line for line in self.lines if line.speaker in speakers]

    def transcript(self) -> str:
        """The lines as a model reads them: `[id] speaker: text`, one a line."""
        return "\n".join(f"[{line.id}] {line.speaker}: {line.text}" for line in self.lines)


@dataclass
class Rubric:
    items: list[dict[str, str]]  # {"id", "text"}

    @property
    def ids(self) -> list[str]:
        return [item["id"] for item in self.items]


class AnalysisInvalid(ValueError):
    """A document that does not match the schema or cites lines the call never had."""


@cache
def load_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def fields_schema(path: str | None = None) -> dict[str, Any]:
    schema = load_json(str(path or DEFAULT_SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    return dict(schema)


def rubric(path: str | None = None) -> Rubric:
    items = load_json(str(path or DEFAULT_RUBRIC))
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("text"), str)
        for i in items
    ):
        raise ValueError(f"{path or DEFAULT_RUBRIC}: a rubric is a list of {{id, text}}")
    return Rubric(items)


def document_schema(fields: dict[str, Any], rub: Rubric) -> dict[str, Any]:
    """The JSON schema of a whole analysis (what a model must answer; strict-mode friendly:
    every property required, no others)."""
    evidence = {"type": "array", "items": {"type": "string"}}

    def obj(props: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }

    turning = obj({"line_id": {"type": "string"}, "to": {"enum": list(SENTIMENTS)}})
    item = obj({
        "id": {"enum": rub.ids},
        "passed": {"type": ["boolean", "null"]},
        "evidence": evidence,
        "note": {"type": "string"},
    })  # fmt: skip
    return obj({
        "summary": {"type": "string", "minLength": 1, "maxLength": 1200},
        "outcome": {"enum": list(OUTCOMES)},
        "sentiment": obj({
            "label": {"enum": list(SENTIMENTS)},
            "turning_points": {"type": "array", "items": turning},
        }),
        "fields": fields,
        "scorecard": {"type": "array", "items": item},
    })  # fmt: skip


def check(doc: Any, conv: Conversation, fields: dict[str, Any], rub: Rubric) -> dict[str, Any]:
    """`doc` if it is a valid analysis of `conv`; else `AnalysisInvalid` saying why."""
    try:
        jsonschema.validate(doc, document_schema(fields, rub))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(document)"
        # The rule it broke, not the value (a value may quote the call).
        raise AnalysisInvalid(f"{where}: fails {exc.validator}") from None
    ids = {line.id for line in conv.lines}
    cited = [p["line_id"] for p in doc["sentiment"]["turning_points"]]
    cited += [e for item in doc["scorecard"] for e in item["evidence"]]
    unknown = sorted(set(cited) - ids)
    if unknown:
        raise AnalysisInvalid(f"cites lines the call does not have: {unknown[:5]}")
    if sorted(item["id"] for item in doc["scorecard"]) != sorted(rub.ids):
        raise AnalysisInvalid(f"scorecard: must judge each rubric item once: {rub.ids}")
    return dict(doc)


def score(doc: dict[str, Any]) -> float | None:
    """The share of judged scorecard items that passed (None: none judged)."""
    judged = [item["passed"] for item in doc["scorecard"] if item["passed"] is not None]
    return round(sum(judged) / len(judged), 3) if judged else None


# --- the local method ---------------------------------------------------------------------


@cache
def _vader() -> Any:
    from vader import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def mood(compound: float) -> str:
    if compound >= POSITIVE_AT:
        return "positive"
    return "negative" if compound <= NEGATIVE_AT else "neutral"


def sentiment(conv: Conversation) -> dict[str, Any]:
    """The customer's sentiment: the label of the mean compound score of their lines (the
    later half counts double: how a call ends matters most), and the lines where their mood
    swung by `TURN_SWING` or more."""
    said = conv.said_by("customer")
    scores = [_vader().polarity_scores(line.text)["compound"] for line in said]
    if not scores:
        return {"label": "neutral", "turning_points": []}
    weights = [1.0 if i < len(scores) / 2 else 2.0 for i in range(len(scores))]
    mean = sum(s * w for s, w in zip(scores, weights, strict=True)) / sum(weights)
    turns = [
        {"line_id": said[i].id, "to": mood(scores[i])}
        for i in range(1, len(scores))
        if abs(scores[i] - scores[i - 1]) >= TURN_SWING and mood(scores[i]) != mood(scores[i - 1])
    ]
    return {"label": mood(mean), "turning_points": turns}


def _quote(line: Line) -> str:
    text = " ".join(line.text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1].rstrip() + "…"


def _first(lines: list[Line], pattern: str) -> Line | None:
    found = re.compile(pattern, re.IGNORECASE)
    return next((line for line in lines if found.search(line.text)), None)


def vehicle(drive: dict[str, Any]) -> str:
    return " ".join(str(drive[k]) for k in ("year", "make", "model") if drive.get(k))


def local_outcome(conv: Conversation) -> str:
    if not conv.said_by("customer"):
        return "abandoned"
    if conv.handoffs:
        return "handed_off"
    return "resolved" if conv.test_drives else "follow_up"


def local_fields(conv: Conversation, fields: dict[str, Any]) -> dict[str, Any]:
    """The configured fields the tools recorded; every other one is null (unknown)."""
    drive = conv.test_drives[-1] if conv.test_drives else None
    known: dict[str, Any] = {
        "test_drive_booked": bool(drive),
        "test_drive_at": str(drive["scheduled_at"]) if drive else None,
        "vehicle": (
            {
                "vin": drive.get("vin"),
                "year": drive.get("year"),
                "make": drive.get("make"),
                "model": drive.get("model"),
            }
            if drive
            else None  # fmt: skip
        ),
        "handoff_requested": bool(conv.handoffs),
    }
    out: dict[str, Any] = {}
    for name, spec in fields.get("properties", {}).items():
        value = known.get(name)
        out[name] = value if value is not None or _nullable(spec) else _empty(spec)
    return out


def _nullable(spec: dict[str, Any]) -> bool:
    kind = spec.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def _empty(spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    return {"boolean": False, "string": "", "array": [], "object": {}}.get(str(kind), None)


def local_summary(conv: Conversation, outcome: str) -> str:
    """Quotes, never paraphrase: the customer's first words of substance, the booking or the
    hand-off the tools recorded, and Sarah's last line."""
    customer, sarah = conv.said_by("customer"), conv.said_by("assistant")
    parts: list[str] = []
    ask = next((line for line in customer if len(line.text.split()) >= 4), None) or (
        customer[0] if customer else None
    )
    parts.append(f'The customer said: "{_quote(ask)}".' if ask else "The customer said nothing.")
    for drive in conv.test_drives:
        parts.append(f"A test drive was booked: {vehicle(drive)} at {drive['scheduled_at']}.")
    for handoff in conv.handoffs:
        reason = str(handoff.get("reason") or "").strip()
        parts.append(f"A person was asked for{f' ({reason[:QUOTE_CHARS]})' if reason else ''}.")
    if sarah:
        parts.append(f'Sarah\'s last words: "{_quote(sarah[-1])}".')
    parts.append(f"Outcome: {outcome.replace('_', ' ')}.")
    return " ".join(parts)[:1200]


def local_scorecard(conv: Conversation, rub: Rubric) -> list[dict[str, Any]]:
    """The rubric items a rule can judge from the lines and the tools' records; the others
    `passed: null` with a note saying so."""
    sarah, customer = conv.said_by("assistant"), conv.said_by("customer")
    opening = sarah[0] if sarah else None

    def item(id_: str, line: Line | None, note: str) -> dict[str, Any]:
        return {"id": id_, "passed": line is not None,
                "evidence": [line.id] if line else [], "note": note}  # fmt: skip

    def booked() -> Line | None:
        if not (conv.test_drives or conv.handoffs):
            return None
        return _first(list(reversed(sarah)), r"\b(book|booked|schedul|colleague|connect)") or (
            sarah[-1] if sarah else None
        )

    rules = {
        "greeted_and_named": lambda: item(
            "greeted_and_named",
            opening if opening and re.search(r"\bSarah\b", opening.text) else None,
            "Sarah's first line names her",
        ),
        "recording_disclosed": lambda: item(
            "recording_disclosed", _first(sarah, r"\brecord"), "a line of Sarah's says recorded"
        ),
        "need_identified": lambda: item(
            "need_identified",
            _first(customer, r"\b(looking|interested|need|want|buy|price|test drive|trade)"),
            "the customer said what they want",
        ),
        "next_step_agreed": lambda: item(
            "next_step_agreed", booked(), "a test drive booked or a person asked for (tools)"
        ),
    }
    out = []
    for entry in rub.items:
        rule = rules.get(entry["id"])
        out.append(rule() if rule else {"id": entry["id"], "passed": None, "evidence": [],
                                        "note": "not judged by the local method"})  # fmt: skip
    return out


def analyze_locally(conv: Conversation, fields: dict[str, Any], rub: Rubric) -> dict[str, Any]:
    outcome = local_outcome(conv)
    return {
        "summary": local_summary(conv, outcome),
        "outcome": outcome,
        "sentiment": sentiment(conv),
        "fields": local_fields(conv, fields),
        "scorecard": local_scorecard(conv, rub),
    }


# --- the language model's side ------------------------------------------------------------

INSTRUCTIONS = """You analyse one finished phone call between a car dealership's voice agent
(Sarah, speaker "assistant") and a customer, for the dealership's supervisors and QA.
Answer with JSON only, under the schema given. Rules:
- summary: two to four plain sentences of what happened; only what the transcript says.
- outcome: resolved (the customer's need was met or a next step booked), follow_up (someone must
  get back to the customer), handed_off (a person was asked for), abandoned (the customer left
  before any real conversation).
- sentiment: the customer's, with the line ids where it turned.
- fields: only what the transcript or the tools' records state; null when unknown.
- scorecard: judge each rubric item once; passed true or false with the ids of the lines that
  show it (null only when the call gives no way to judge); a short note.
Cite line ids exactly as written in brackets."""


def prompt(conv: Conversation, rub: Rubric) -> str:
    tools = {"test_drives": conv.test_drives, "handoffs": conv.handoffs}
    items = "\n".join(f"- {i['id']}: {i['text']}" for i in rub.items)
    return (
        f"Rubric:\n{items}\n\nTools' records:\n{json.dumps(tools, default=str)}\n\n"
        f"Call ended: {conv.end_reason or 'unknown'}\n\nTranscript:\n{conv.transcript()}"
    )
