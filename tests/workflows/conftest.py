"""The workflow harness (testkit/harness.py) per test: a worker with stand-in activities on a
task queue of its own, on the shared time-skipping test server or on the dev server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from testkit.harness import Harness, running_harness


@pytest.fixture
async def harness(temporal_test_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """On the time-skipping test server."""
    async with running_harness(temporal_test_env) as h:
        yield h


@pytest.fixture
async def dev_harness(temporal_dev_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """On the dev server (real time). For bursts of concurrent signals: they make the
    time-skipping server fail workflow tasks (UnhandledCommand) and then stop skipping time."""
    async with running_harness(temporal_dev_env) as h:
        yield h
