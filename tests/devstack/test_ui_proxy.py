"""devstack's Temporal Web UI is read-only: the real dev server's UI behind devstack.ui_proxy, as
`devstack up` starts them. The UI is told its write actions are off, and a write sent anyway
(with the UI server's CSRF cookie and header, as the browser would) never reaches Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from yarl import URL

from devstack.services import free_port, temporal_dev_server
from devstack.ui_proxy import ui_proxy, write_refused


@dataclass
class Ui:
    url: str
    client: Client
    http: aiohttp.ClientSession

    async def write(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        """A request as the UI's page sends it: the `_csrf` cookie echoed in X-CSRF-TOKEN."""
        async with self.http.get(self.url + "/") as r:
            assert r.status == 200
        csrf = self.http.cookie_jar.filter_cookies(URL(self.url + "/"))["_csrf"].value
        async with self.http.request(method, self.url + path, json=body or {},
                                     headers={"X-CSRF-TOKEN": csrf}) as r:  # fmt: skip
            return r.status, await r.text()


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    temporal_port, ui_inner, ui_port = free_port(), free_port(), free_port()
    temporal = temporal_dev_server(tmp_path, temporal_port, ui_inner, in_memory=True)
    await temporal.start()
    proxy = ui_proxy(ui_port, ui_inner, tmp_path / "logs")
    try:
        await proxy.start()
        client = await Client.connect(f"127.0.0.1:{temporal_port}")
        jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            yield Ui(f"http://127.0.0.1:{ui_port}", client, http)
    finally:
        await proxy.stop()
        await temporal.stop()


async def test_the_ui_is_told_and_held_to_read_only(ui: Ui) -> None:
    async with ui.http.get(ui.url + "/api/v1/settings") as r:
        assert (await r.json())["DisableWriteActions"] is True

    handle = await ui.client.start_workflow("CallWorkflow", id="call-ui-1", task_queue="nobody")
    base = "/api/v1/namespaces/default/workflows/call-ui-1"
    status, body = await ui.write("POST", base + "/terminate", {"reason": "forged"})
    assert status == 405 and "read-only" in body
    status, _ = await ui.write("POST", base + "/signal/end_call", {"input": {}})
    assert status == 405
    status, _ = await ui.write("POST", "/api/v1/namespaces/default/workflows/call-ui-2",
                               {"workflowType": {"name": "EraseCallWorkflow"}})  # fmt: skip
    assert status == 405

    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    events = [e async for e in handle.fetch_history_events()]
    assert not any(e.HasField("workflow_execution_signaled_event_attributes") for e in events)
    assert not any([e async for e in ui.client.list_workflows("WorkflowId = 'call-ui-2'")])

    # Reads pass through: the workflow, and a query (the UI's one POST), which reaches Temporal.
    async with ui.http.get(ui.url + base) as r:
        assert r.status == 200 and "call-ui-1" in await r.text()
    status, body = await ui.write("POST", "/api/v1/namespaces/default/workflows/no-such/query/q")
    assert status == 404 and "read-only" not in body


@pytest.mark.parametrize(
    ("method", "path", "refused"),
    [
        ("GET", "/api/v1/namespaces/default/workflows", False),
        ("HEAD", "/", False),
        ("POST", "/api/v1/namespaces/default/workflows/call-x/query/get_state", False),
        ("POST", "/api/v1/namespaces/default/workflows/a%2Fb/query/__stack_trace?x=1", False),
        ("POST", "/api/v1/namespaces/default/workflows/call-x/signal/query/", True),
        ("POST", "/api/v1/namespaces/default/workflows/call-x/query/q/../../terminate", True),
        ("POST", "/api/v1/namespaces/default/workflows/call-x/reset", True),
        ("POST", "/api/v1/namespaces/default/batch-operations/b1", True),
        ("DELETE", "/api/v1/namespaces/default/schedules/call-retention", True),
        ("PATCH", "/anything", True),
    ],
)
def test_which_requests_a_read_only_ui_refuses(method: str, path: str, refused: bool) -> None:
    assert write_refused(method, path) is refused
