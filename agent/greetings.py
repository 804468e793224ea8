"""What Sarah says first, per recording-consent policy, from `agent/prompts/greetings.toml`.

The one reader of that file: the agent (`agent.sarah`) and the devstack stand-in
(`devstack.standin`) both take the greeting from here, and a callback's call its opening
(`callback_greeting`: who calls and why, under the same recording policy).
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


# What a callback's opening says when the callback was given no reason.
NO_REASON = "your earlier call with us"


def callback_greeting_parts(policy: RecordingConsent, reason: str) -> tuple[str, str]:
    """A callback's call: (disclosure, rest) that say who calls and why ("You asked us to call
    you back about the Silverado test drive"), with the policy's recording notice."""
    entry = prompt_texts()["callback"][policy.value]
    return entry["disclosure"], entry["rest"].replace("{reason}", reason.strip() or NO_REASON)


def callback_greeting(policy: RecordingConsent, reason: str) -> str:
    return " ".join(p for p in callback_greeting_parts(policy, reason) if p)
