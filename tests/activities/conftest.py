"""Helpers for the activity tests: activities run in `ActivityEnvironment` against real services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the session's PostgreSQL, closed after the test."""
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@dataclass
class Run:
    """Runs activities the way a worker would, keeping every heartbeat's details."""

    env: ActivityEnvironment = field(default_factory=ActivityEnvironment)
    heartbeats: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env.on_heartbeat = lambda *details: self.heartbeats.append(
            details[0] if details else None
        )

    async def __call__(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return await self.env.run(fn, *args)


async def app_error(coro: Awaitable[Any]) -> ApplicationError:
    """The ApplicationError `coro` raises (fails the test if it raises nothing or another)."""
    try:
        await coro
    except ApplicationError as err:
        return err
    raise AssertionError("expected an ApplicationError, got none")
