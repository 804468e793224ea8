"""Phone numbers and the names this product gives LiveKit's SIP objects: one home for E.164
checks, the allowed-prefix rule (toll fraud), masking, and the trunk and rule names that
`ops telephony setup` finds again on its next run (it is idempotent by name).

A phone number is customer data: anything shown to a supervisor, written to a log line or a
metric label goes through `mask_number`; only an admin's call detail shows it in full.
"""

from __future__ import annotations

import re

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
PREFIX = re.compile(r"^\+\d{0,14}$")
INBOUND_TRUNK_NAME = "callcenter inbound"
OUTBOUND_TRUNK_NAME = "callcenter outbound"
DISPATCH_RULE_NAME = "callcenter agent"
MASK = "•••••"


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


def split_list(raw: str) -> list[str]:
    return [x.strip() for x in raw.split(",") if x.strip()]


def allowed(number: str, prefixes: list[str]) -> bool:
    """True when `number` starts with one of the allowed prefixes (none: nothing is allowed)."""
    return any(number.startswith(p) for p in prefixes)


def mask_number(number: str) -> str:
    """`+15551230001` -> `+1•••••0001`: the country code's first digit and the last four."""
    if not number:
        return ""
    if len(number) <= 6:
        return MASK
    return number[:2] + MASK + number[-4:]


def tel_target(uri: str) -> str:
    """The number in a transfer target (`tel:+1...`, `sip:+1...@host`), "" when none."""
    rest = uri.split(":", 1)[1] if ":" in uri else ""
    return rest.split("@", 1)[0].split(";", 1)[0]
