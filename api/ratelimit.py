"""Per-client rate limit for the customer endpoints (token bucket, in PostgreSQL), and who the
client is.

A client is its address (`client_address`), except that an IPv6 client is its /64
(`client_key`): one subscriber line or host holds a whole /64, and would otherwise have 2**64
fresh buckets. Each client may burst up to `per_minute` requests and then gets one more every
60/per_minute seconds. The buckets are rows of `rate_buckets`, so every API instance behind a
balancer counts the same requests; one statement takes a token (the row's lock orders
concurrent requests of a client). A bucket that would be full again is deleted now and then
(`_PRUNE_EVERY` checks), so spraying addresses grows the table for a minute at most and never
resets anyone's limit.

The address is the socket's peer, unless that peer is one of `TRUSTED_PROXIES`: then it is the
nearest `X-Forwarded-For` hop that is not a trusted proxy. Sanic's `PROXIES_COUNT` trusts the
header whoever sent it (a client that reaches the API directly names any address it likes), so
Sanic's proxy settings are not consulted here.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

import asyncpg
from sanic import Request

from api.errors import RateLimited
from core.settings import Network

_V4_MAPPED = bytes(10) + b"\xff\xff"
_PRUNE_EVERY = 256


# Refill by the time since the last request (capped at the burst), then take a token if whole.
_REFILLED = "least($2, b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $3)"
_TAKE = f"""
INSERT INTO rate_buckets AS b (client_key, tokens, updated_at, allowed)
VALUES ($1, $2::float8 - 1, now(), true)
ON CONFLICT (client_key) DO UPDATE SET
    tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
    allowed = {_REFILLED} >= 1,
    updated_at = now()
RETURNING allowed, tokens
"""


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._checks = 0

    async def check(self, db: asyncpg.Pool, key: str) -> float:
        """Take one token for `key`; return 0 if allowed, else seconds until the next token."""
        row = await db.fetchrow(_TAKE, key, self.capacity, self.refill_per_s)
        assert row is not None
        self._checks += 1
        if self._checks % _PRUNE_EVERY == 0:
            await self.prune(db)
        if row["allowed"]:
            return 0.0
        return (1.0 - float(row["tokens"])) / self.refill_per_s

    async def prune(self, db: asyncpg.Pool) -> int:
        """Delete the buckets that have refilled (as good as absent); return how many."""
        full_after_s = self.capacity / self.refill_per_s
        done = await db.execute(
            "DELETE FROM rate_buckets WHERE updated_at < now() - make_interval(secs => $1)",
            full_after_s,
        )
        return int(done.split()[-1])


def _trusted(address: str, proxies: Sequence[Network]) -> bool | None:
    """True/False for an address inside/outside `proxies`; None when it is not an address."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in proxies)


def forwarded_client(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client behind `peer`: `peer` itself unless it is a trusted proxy; then the nearest
    `X-Forwarded-For` hop (right to left) that is not a trusted proxy. A hop that is not an
    address ends the walk at the proxy that passed it on (it was not written by a proxy)."""
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        trusted = _trusted(hop, proxies)
        if trusted is None:
            return client
        client = hop
        if not trusted:
            return hop
    return client  # every hop is a proxy: the farthest one is the client


def client_address(request: Request) -> str:
    """The caller's address, honouring `X-Forwarded-For` only from `TRUSTED_PROXIES` peers."""
    peer = request.ip or "unknown"
    proxies: tuple[Network, ...] = request.app.ctx.trusted_proxies
    return forwarded_client(peer, request.headers.getall("x-forwarded-for", []), proxies)


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
        await enforce(request)
        return await handler(request, *args, **kwargs)

    return limited  # type: ignore[return-value]


async def enforce(request: Request) -> None:
    """Raise 429 with `Retry-After` when the caller's address is over the limit."""
    limiter: RateLimiter = request.app.ctx.rate_limiter
    wait = await limiter.check(request.app.ctx.res.db, client_key(client_address(request)))
    if wait > 0:
        retry_after = str(max(1, math.ceil(wait)))
        raise RateLimited(
            f"too many requests from this address; retry after {retry_after} s",
            headers={"Retry-After": retry_after},
        )
