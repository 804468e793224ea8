"""Admission of new calls: what one anonymous client, and everyone together, may hold at once.

Every call dispatches an agent, which holds a job until the customer joins (or until
`CUSTOMER_JOIN_TIMEOUT_S`, when the workflow ends the call). The rate limit bounds how often a
client may start calls; two caps bound what they hold:

- `MAX_WAITING_CALLS`: calls whose customer has not joined yet, all clients together. Beyond it
  a new call is 503 with `Retry-After` (until the oldest waiting call times out).
- `MAX_CALLS_PER_CLIENT`: live calls of one client (`ratelimit.client_key`: its address, an IPv6
  client by its /64). Beyond it, 429 with `Retry-After`.

Counted in memory per API instance, like the rate limit: with N instances behind a balancer
the caps are N times as large. A place is reserved before the workflow starts (so concurrent
requests cannot all slip under a cap) and given back if the start fails. A call stops waiting
when this instance sees its customer's `participant_joined` webhook or at the join timeout; it
stops counting when this instance sees it end (customer left, room finished), at
`MAX_CALL_DURATION_S`, or when the calls table says it ended (read only when a cap is reached,
so webhooks that went to another instance cost nothing until they matter).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from api.errors import RateLimited, Unavailable

# Given call ids, return those that have ended (the calls table is the truth across instances).
EndedLookup = Callable[[list[str]], Awaitable[set[str]]]


@dataclass
class _Held:
    key: str
    started: float
    waiting: bool = True


class Admission:
    def __init__(
        self,
        *,
        max_waiting: int,
        max_per_client: int,
        join_timeout_s: float,
        max_call_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client
        self.join_timeout_s = join_timeout_s
        self.max_call_s = max_call_s
        self._clock = clock
        self._calls: dict[str, _Held] = {}

    def waiting(self) -> list[str]:
        self._expire(self._clock())
        return [cid for cid, c in self._calls.items() if c.waiting]

    def of_client(self, key: str) -> list[str]:
        self._expire(self._clock())
        return [cid for cid, c in self._calls.items() if c.key == key]

    async def admit(self, key: str, call_id: str, ended: EndedLookup) -> None:
        """Reserve a place for `call_id` of client `key`, or raise 429 / 503 (see module doc)."""
        if len(self.of_client(key)) >= self.max_per_client:
            self._forget(await ended(self.of_client(key)))
        if len(self.waiting()) >= self.max_waiting:
            self._forget(await ended(self.waiting()))
        # Decided and reserved with no await in between: concurrent requests see each other.
        now = self._clock()
        self._expire(now)
        if len(self.of_client(key)) >= self.max_per_client:
            raise RateLimited(
                f"this address already has {self.max_per_client} calls; end one first",
                code="too_many_calls",
                headers={"Retry-After": "30"},
            )
        waiting = [c.started for c in self._calls.values() if c.waiting]
        if len(waiting) >= self.max_waiting:
            wait = max(1, math.ceil(min(waiting) + self.join_timeout_s - now))
            raise Unavailable(
                "too many calls are waiting to be answered; try again shortly",
                code="busy",
                headers={"Retry-After": str(wait)},
            )
        self._calls[call_id] = _Held(key, now)

    def release(self, call_id: str) -> None:
        """The call was never started (its workflow did not start or refused): give it back."""
        self._calls.pop(call_id, None)

    def customer_joined(self, call_id: str) -> None:
        held = self._calls.get(call_id)
        if held is not None:
            held.waiting = False

    def ended(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def _forget(self, call_ids: set[str]) -> None:
        for cid in call_ids:
            self._calls.pop(cid, None)

    def _expire(self, now: float) -> None:
        for cid, held in list(self._calls.items()):
            if now - held.started >= self.max_call_s:
                del self._calls[cid]
            elif held.waiting and now - held.started >= self.join_timeout_s:
                held.waiting = False
