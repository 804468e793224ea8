"""Phone numbers and the names this product gives LiveKit's SIP objects: one home for E.164
checks, the allowed-prefix rule (toll fraud), masking, and the trunk and rule names that
`ops telephony setup` finds again on its next run (it is idempotent by name).

A phone number is customer data: anything shown to a supervisor, written to a log line or a
metric label goes through `mask_number`; only an admin's call detail shows it in full.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

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


# One lock id for the hourly cap (pg_advisory_xact_lock takes a bigint).
_CAP_LOCK = 0x70686F6E65  # "phone"


async def claim_outbound(pool: asyncpg.Pool, call_id: str, by: str, per_hour: int) -> bool:
    """Claim one of the hour's outbound calls (SIP_OUTBOUND_MAX_PER_HOUR, every API instance
    and every callback together) for `call_id`; False when the hour is full. A call that
    claimed before (a retried callback start) keeps its claim."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _CAP_LOCK)
        if await conn.fetchval("SELECT 1 FROM outbound_dials WHERE call_id = $1", call_id):
            return True
        used = await conn.fetchval(
            "SELECT count(*) FROM outbound_dials WHERE created_at > now() - interval '1 hour'"
        )
        if used >= per_hour:
            return False
        await conn.execute(
            "INSERT INTO outbound_dials (call_id, by_whom) VALUES ($1, $2)", call_id, by
        )
        return True
