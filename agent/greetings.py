"""What Sarah says first, per recording-consent policy, from `agent/prompts/greetings.toml`.

The one reader of that file: the agent (`agent.sarah`) and the devstack stand-in
(`devstack.standin`) both take the greeting from here.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from core.settings import RecordingConsent

PROMPTS = Path(__file__).parent / "prompts"


@cache
def prompt_texts() -> dict[str, Any]:
    """greetings.toml: one table per `RecordingConsent` value, and `instructions`."""
    return tomllib.loads((PROMPTS / "greetings.toml").read_text())


def greeting_parts(policy: RecordingConsent) -> tuple[str, str]:
    """(disclosure, rest): the disclosure is heard in full, the rest may be interrupted."""
    entry = prompt_texts()[policy.value]
    return entry["disclosure"], entry["rest"]


def greeting(policy: RecordingConsent) -> str:
    """The first thing Sarah says; carries the recording disclosure or question per policy."""
    return " ".join(p for p in greeting_parts(policy) if p)
