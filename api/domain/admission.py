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
        # Both in the order calls started (the clock is monotonic), so expiry pops from the
        # front and an admission costs the same with ten calls held or ten thousand.
        self._calls: dict[str, _Held] = {}
        self._waiting: dict[str, float] = {}  # call id -> started, customer not in yet
        self._by_key: dict[str, set[str]] = {}

    def waiting(self) -> list[str]:
        self._expire(self._clock())
        return list(self._waiting)

    def of_client(self, key: str) -> list[str]:
        self._expire(self._clock())
        return list(self._by_key.get(key, ()))

    async def admit(self, key: str, call_id: str, ended: EndedLookup) -> None:
        """Reserve a place for `call_id` of client `key`, or raise 429 / 503 (see module doc)."""
        self._expire(self._clock())
        if len(self._by_key.get(key, ())) >= self.max_per_client:
            self._forget(await ended(self.of_client(key)))
        if len(self._waiting) >= self.max_waiting:
            self._forget(await ended(self.waiting()))
        # Decided and reserved with no await in between: concurrent requests see each other.
        now = self._clock()
        self._expire(now)
        if len(self._by_key.get(key, ())) >= self.max_per_client:
            raise RateLimited(
                f"this address already has {self.max_per_client} calls; end one first",
                code="too_many_calls",
                headers={"Retry-After": "30"},
            )
        if len(self._waiting) >= self.max_waiting:
            oldest = next(iter(self._waiting.values()))
            wait = max(1, math.ceil(oldest + self.join_timeout_s - now))
            raise Unavailable(
                "too many calls are waiting to be answered; try again shortly",
                code="busy",
                headers={"Retry-After": str(wait)},
            )
        self._calls[call_id] = _Held(key, now)
        self._waiting[call_id] = now
        self._by_key.setdefault(key, set()).add(call_id)

    def release(self, call_id: str) -> None:
        """The call was never started (its workflow did not start or refused): give it back."""
        self._drop(call_id)

    def customer_joined(self, call_id: str) -> None:
        self._waiting.pop(call_id, None)

    def ended(self, call_id: str) -> None:
        self._drop(call_id)

    def _forget(self, call_ids: set[str]) -> None:
        for cid in call_ids:
            self._drop(cid)

    def _drop(self, call_id: str) -> None:
        held = self._calls.pop(call_id, None)
        if held is None:
            return
        self._waiting.pop(call_id, None)
        ids = self._by_key.get(held.key)
        if ids is not None:
            ids.discard(call_id)
            if not ids:
                del self._by_key[held.key]

    def _expire(self, now: float) -> None:
        while self._waiting:
            call_id, started = next(iter(self._waiting.items()))
            if now - started < self.join_timeout_s:
                break
            del self._waiting[call_id]
        while self._calls:
            call_id, held = next(iter(self._calls.items()))
            if now - held.started < self.max_call_s:
                break
            self._drop(call_id)
