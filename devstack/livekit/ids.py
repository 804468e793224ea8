"""LiveKit-style identifiers (a type prefix and 12 base62 characters: RM_, PA_, EG_...) and
timestamps (LiveKit reports most times in unix nanoseconds)."""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 12) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now_ns() -> int:
    return time.time_ns()
