"""Admission of new calls: what one anonymous client, and everyone together, may hold at once.

Every call dispatches an AI agent, which holds a job (and paid speech and language services)
until the call ends; until its customer joins (or `CUSTOMER_JOIN_TIMEOUT_S`, when the workflow
ends the call) it also holds a waiting place. The rate limit bounds how often a client may start
calls; these caps bound what they hold, checked in this order:

- `MAX_CALLS_PER_CLIENT`: live calls of one client (`ratelimit.client_key`: its address, an IPv6
  client by its /64). Beyond it, 429 `too_many_calls`.
- Fair share of waiting places: the first half of `MAX_WAITING_CALLS` is first come, first
  served; the second half goes one per client. Once half the places are taken, a client that
  already has a call waiting is refused (429 `waiting_share_used`) while clients with none still
  get in, so a handful of addresses cannot take every place.
- `MAX_WAITING_CALLS`: calls whose customer has not joined yet, all clients together. Beyond it,
  503 `busy` with `Retry-After` (when the oldest waiting call's join timeout runs out).
- `MAX_LIVE_AI_CALLS`: live calls, all clients together: the bill's ceiling. Beyond it, 503
  `at_capacity`.

The places live in PostgreSQL (`admissions`), so every API instance enforces the same caps. A
decision is one transaction under an advisory lock, so concurrent requests, on one instance or
several, cannot all slip under a cap; the place is taken in the same transaction and given back
if the workflow does not start. A call stops waiting when any instance sees its customer's
`participant_joined` webhook, or at the join timeout; it stops counting when any instance sees
it end (customer left, room finished), when the calls table says it ended (looked at in each
decision), or at `MAX_CALL_DURATION_S`. The database's clock is the only clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import asyncpg

from api.errors import RateLimited, Unavailable
from core.models import CallStatus

_LOCK = 727_008  # arbitrary, constant: serialises admission decisions across API instances
_ACTIVE = [s.value for s in CallStatus if s.is_active]

# Places of calls the calls table says have ended, or that have outlived the longest call.
_FORGET = """
DELETE FROM admissions a
 WHERE a.admitted_at < now() - make_interval(secs => $1)
    OR EXISTS (SELECT 1 FROM calls c
                WHERE c.call_id = a.call_id AND NOT c.status = ANY($2::text[]))
"""
_COUNT = """
SELECT count(*) AS live,
       count(*) FILTER (WHERE waiting) AS waiting,
       count(*) FILTER (WHERE client_key = $2) AS mine,
       count(*) FILTER (WHERE waiting AND client_key = $2) AS mine_waiting,
       extract(epoch FROM min(admitted_at) FILTER (WHERE waiting)
                          + make_interval(secs => $1) - now()) AS first_free_s,
       extract(epoch FROM min(admitted_at) FILTER (WHERE waiting AND client_key = $2)
                          + make_interval(secs => $1) - now()) AS mine_free_s
  FROM (SELECT client_key, admitted_at,
               joined_at IS NULL AND admitted_at > now() - make_interval(secs => $1) AS waiting
          FROM admissions) AS held
"""


@dataclass(frozen=True)
class Held:
    """What the places hold now (for a client, when one is named)."""

    live: int
    waiting: int
    mine: int = 0
    mine_waiting: int = 0


class Admission:
    def __init__(
        self,
        *,
        max_waiting: int,
        max_per_client: int,
        max_live: int,
        join_timeout_s: float,
        max_call_s: float,
    ) -> None:
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client
        self.max_live = max_live
        self.join_timeout_s = join_timeout_s
        self.max_call_s = max_call_s

    async def admit(self, db: asyncpg.Pool, key: str, call_id: str) -> None:
        """Take a place for `call_id` of client `key`, or raise 429 / 503 (see module doc)."""
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await conn.execute(_FORGET, float(self.max_call_s), _ACTIVE)
            row = await conn.fetchrow(_COUNT, float(self.join_timeout_s), key)
            assert row is not None
            self._check(row)
            await conn.execute(
                "INSERT INTO admissions (call_id, client_key) VALUES ($1, $2)", call_id, key
            )

    def _check(self, row: asyncpg.Record) -> None:
        if row["mine"] >= self.max_per_client:
            raise RateLimited(
                f"this address already has {self.max_per_client} calls; end one first",
                code="too_many_calls",
                headers={"Retry-After": "30"},
            )
        if row["mine_waiting"] and row["waiting"] * 2 >= self.max_waiting:
            raise RateLimited(
                "this address already has a call waiting to be answered; join it, or try again "
                "when it has been answered",
                code="waiting_share_used",
                headers={"Retry-After": _seconds(row["mine_free_s"])},
            )
        if row["waiting"] >= self.max_waiting:
            raise Unavailable(
                "too many calls are waiting to be answered; try again shortly",
                code="busy",
                headers={"Retry-After": _seconds(row["first_free_s"])},
            )
        if row["live"] >= self.max_live:
            raise Unavailable(
                "all our agents are busy with other calls; try again in a minute",
                code="at_capacity",
                headers={"Retry-After": "60"},
            )

    async def release(self, db: asyncpg.Pool, call_id: str) -> None:
        """The call was never started (its workflow did not start or refused): give it back."""
        await db.execute("DELETE FROM admissions WHERE call_id = $1", call_id)

    async def customer_joined(self, db: asyncpg.Pool, call_id: str) -> None:
        await db.execute(
            "UPDATE admissions SET joined_at = now() WHERE call_id = $1 AND joined_at IS NULL",
            call_id,
        )

    async def ended(self, db: asyncpg.Pool, call_id: str) -> None:
        await db.execute("DELETE FROM admissions WHERE call_id = $1", call_id)

    async def held(self, db: asyncpg.Pool, key: str = "") -> Held:
        """What is held now, everyone's and `key`'s (ended calls already forgotten)."""
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await conn.execute(_FORGET, float(self.max_call_s), _ACTIVE)
            row = await conn.fetchrow(_COUNT, float(self.join_timeout_s), key)
        assert row is not None
        return Held(row["live"], row["waiting"], row["mine"], row["mine_waiting"])


def _seconds(left: float | None) -> str:
    return str(max(1, math.ceil(left or 1)))
