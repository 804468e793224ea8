"""Shared fixtures live in tests/fixtures/; each component's tests sit in a folder of their own."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.livekit"]

_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without interpreter teardown once the run is reported, as every process here that
    talks to Temporal does (`core.temporal.exit_process`): the Temporal core's threads can abort a
    finalizing interpreter (SIGABRT), which would turn a green run into exit -6."""
    if _EXIT_STATUS in config.stash:
        from core.temporal import exit_process

        exit_process(config.stash[_EXIT_STATUS])
