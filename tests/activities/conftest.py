"""Helpers for the activity tests: activities run in `ActivityEnvironment` against real services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment


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
