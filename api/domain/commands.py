"""Which supervisor command an id names on a call (whisper, takeover, release).

A client sends its own `id` so that a retry is applied once: the workflow drops a repeated
`supervisor_action` signal id, the agent a repeated command id. An id reused for a *different*
command would be dropped the same way, unrecorded and unapplied, while the API answered 202.
So the API claims the id first (table `supervisor_commands`, one row per call and id): the same
action, caller and text is a retry and goes through as before; anything else is a reuse, which
the caller is told (409 `command_id_reused`) and the call's log records (`command_refused`).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import asyncpg

_CLAIM = """
INSERT INTO supervisor_commands (call_id, command_id, action, by_whom, text_sha256)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_id, command_id) DO NOTHING RETURNING 1
"""
_CLAIMED = """
SELECT action, by_whom, text_sha256 FROM supervisor_commands
WHERE call_id = $1 AND command_id = $2
"""


class Claim(StrEnum):
    NEW = "new"
    RETRY = "retry"  # the same command again: recorded once, applied once
    REUSED = "reused"  # the id already names another command on this call


async def claim_command(
    pool: asyncpg.Pool, call_id: str, command_id: str, action: str, by: str, text: str
) -> Claim:
    """Claim `command_id` on the call for this command (atomic: of two racing requests with
    one id, one gets NEW and the other RETRY or REUSED)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    async with pool.acquire() as conn:
        if await conn.fetchval(_CLAIM, call_id, command_id, action, by, digest):
            return Claim.NEW
        row = await conn.fetchrow(_CLAIMED, call_id, command_id)
    if row is not None and (row["action"], row["by_whom"], row["text_sha256"]) == (
        action,
        by,
        digest,
    ):
        return Claim.RETRY
    return Claim.REUSED
