"""Per-client rate limit for the customer endpoints (token bucket, in process memory).

A client is its address, except that an IPv6 client is its /64 (`client_key`): one subscriber
line or host holds a whole /64, and would otherwise have 2**64 fresh buckets. Each client may
burst up to `per_minute` requests and then gets one more every 60/per_minute seconds. The
buckets are bounded (`max_clients`): the least recently used one is dropped for a new client,
so an address-spraying client evicts only stale buckets and never resets everyone's limit.
The limit is per API instance: with N instances behind a balancer a client may reach N times
the limit, which is acceptable for abuse protection (not for billing).
"""

from __future__ import annotations

import math
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from sanic import Request

from api.errors import RateLimited

_MAX_CLIENTS = 100_000  # bounds memory under an address-spraying client
_V4_MAPPED = bytes(10) + b"\xff\xff"


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = _MAX_CLIENTS,
    ) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.max_clients = max_clients
        self._clock = clock
        # key -> (tokens, updated_at), least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

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
        if key in self._buckets:
            self._buckets.move_to_end(key)
        elif len(self._buckets) >= self.max_clients:
            self._buckets.popitem(last=False)
        self._buckets[key] = (tokens, now)


def client_address(request: Request) -> str:
    """The peer address; forwarded headers count only when Sanic's PROXIES_COUNT/FORWARDED_SECRET
    say a trusted proxy set them (that is what `remote_addr` checks)."""
    return request.remote_addr or request.ip or "unknown"


def client_key(address: str) -> str:
    """What limits count by: an IPv4 address as is, an IPv6 address by its /64 (an IPv4-mapped
    one as its IPv4 address); anything unparsable as it came."""
    host = address.strip("[]").split("%", 1)[0]
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)  # C, unlike ipaddress: ~1 us
    except OSError:
        return address  # IPv4 (one address, one client) or not an address at all
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def rate_limited(handler: H) -> H:
    """Decorator for the customer endpoints: `enforce` before anything else the route checks."""

    @wraps(handler)
    async def limited(request: Request, *args: Any, **kwargs: Any) -> Any:
        enforce(request)
        return await handler(request, *args, **kwargs)

    return limited  # type: ignore[return-value]


def enforce(request: Request) -> None:
    """Raise 429 with `Retry-After` when the caller's address is over the limit."""
    limiter: RateLimiter = request.app.ctx.rate_limiter
    wait = limiter.check(client_key(client_address(request)))
    if wait > 0:
        retry_after = str(max(1, math.ceil(wait)))
        raise RateLimited(
            f"too many requests from this address; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )
