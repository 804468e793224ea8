"""Dashboard sessions, server-side in PostgreSQL (table `sessions`, db/migrations/0007).

A sign-in (the identity provider's, or an API token's holder asking for a codec cookie) stores
a row and hands the browser the `cc_session` cookie: an opaque random id and nothing else
(HttpOnly, SameSite=Lax, Secure over https, path `/`, so both the dashboard's API calls and the
Temporal Web UI's codec requests carry it). The table keeps only the id's SHA-256. Every API
instance reads the same table, so signing out (`revoked_at`) or the end of `SESSION_TTL_S`
refuses the cookie everywhere at once: nothing about a session lives in a process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sanic import Request
from sanic.response import HTTPResponse

from api.oidc import ROLE_ORDER, Person

COOKIE = "cc_session"
COOKIE_PATH = "/"


@dataclass(frozen=True)
class Session:
    """A live session: who (the audit's name for them), their roles (most powerful first)."""

    person: str
    roles: tuple[str, ...]
    via: str
    expires_at: datetime


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def start(
    pool: asyncpg.Pool, person: Person, *, via: str, ttl_s: int
) -> tuple[str, datetime]:
    """Store a new session for `person`; return its id (for the cookie only) and its end."""
    session_id = secrets.token_urlsafe(32)
    expires = await pool.fetchval(
        "INSERT INTO sessions (id_hash, via, subject, email, name, roles, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING expires_at",
        _hash(session_id),
        via,
        person.subject,
        person.email,
        person.name,
        list(person.roles),
        float(ttl_s),
    )
    return session_id, expires


async def lookup(pool: asyncpg.Pool, session_id: str) -> Session | None:
    """The session, or None when it is unknown, expired, revoked or grants no known role."""
    row = await pool.fetchrow(
        "SELECT via, subject, email, roles, expires_at FROM sessions "
        "WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        _hash(session_id),
    )
    if row is None:
        return None
    roles = tuple(r for r in ROLE_ORDER if r in row["roles"])
    if not roles:
        return None
    return Session(row["email"] or row["subject"], roles, row["via"], row["expires_at"])


async def revoke(pool: asyncpg.Pool, session_id: str) -> bool:
    """End the session for every API instance; False when there was none live."""
    done = await pool.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL",
        _hash(session_id),
    )
    return bool(done.endswith(" 1"))


async def forget_expired(pool: asyncpg.Pool) -> None:
    """Drop sessions and unfinished sign-ins that ended a day ago (kept that long for audit)."""
    await pool.execute("DELETE FROM sessions WHERE expires_at < now() - interval '1 day'")
    await pool.execute("DELETE FROM sign_ins WHERE expires_at < now()")


def is_https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return (proto or request.scheme) == "https"


def set_cookie(
    request: Request,
    response: HTTPResponse,
    value: str,
    max_age: int,
    *,
    name: str = COOKIE,
    path: str = COOKIE_PATH,
) -> None:
    """HttpOnly, SameSite=Lax (the provider's redirect back and the Temporal UI on another port
    of this host are same-site), Secure over https; `max_age` 0 removes it."""
    response.add_cookie(
        name,
        value,
        path=path,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=is_https(request),
    )


def clear_cookie(
    request: Request, response: HTTPResponse, *, name: str = COOKIE, path: str = COOKIE_PATH
) -> None:
    # Not Sanic's delete_cookie: it marks the removal Secure, which a browser on http ignores.
    set_cookie(request, response, "", 0, name=name, path=path)
