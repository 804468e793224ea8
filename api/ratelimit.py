"""Per-client-address rate limit for the customer endpoints (token bucket, in process memory).

Each address may burst up to `per_minute` requests and then gets one more every 60/per_minute
seconds. The limit is per API instance: with N instances behind a balancer a client may reach
N times the limit, which is acceptable for abuse protection (not for billing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sanic import Request

from api.errors import RateLimited

_MAX_CLIENTS = 100_000  # bounds memory under an address-spraying client


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)

    def check(self, key: str) -> float:
        """Take one token for `key`; return 0 if allowed, else seconds until the next token."""
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - updated) * self.refill_per_s)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.refill_per_s

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= _MAX_CLIENTS:
            self._evict_full(now)
        self._buckets[key] = (tokens, now)

    def _evict_full(self, now: float) -> None:
        # A bucket that has refilled completely carries no information: drop those first.
        full_after = self.capacity / self.refill_per_s
        stale = [k for k, (_, at) in self._buckets.items() if now - at >= full_after]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= _MAX_CLIENTS:
            self._buckets.clear()


def client_address(request: Request) -> str:
    """The peer address; forwarded headers count only when Sanic's PROXIES_COUNT/FORWARDED_SECRET
    say a trusted proxy set them (that is what `remote_addr` checks)."""
    return request.remote_addr or request.ip or "unknown"


def enforce(request: Request) -> None:
    """Raise 429 with `Retry-After` when the caller's address is over the limit."""
    limiter: RateLimiter = request.app.ctx.rate_limiter
    wait = limiter.check(client_address(request))
    if wait > 0:
        retry_after = str(max(1, math.ceil(wait)))
        raise RateLimited(
            f"too many requests from this address; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )
