"""What the API does, on the dev server (the time-skipping server cannot update-with-start)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import types as act
from core import models as m
from testkit.harness import CUSTOMER, Harness
from workflows.call import CallWorkflow
from workflows.client import end_call, start_call


async def test_start_call_with_update_with_start_then_end_it(dev_harness: Harness) -> None:
    h = dev_harness
    call_id = m.new_call_id()
    h.started += [m.call_workflow_id(call_id), m.recording_workflow_id(call_id)]
    config = m.CallConfig(livekit_url="wss://lk.example", recording_consent="off")
    grant = await start_call(h.client, call_id, CUSTOMER, config, task_queue=h.task_queue)
    assert grant.call_id == call_id and grant.room_name == m.room_name_for(call_id)
    assert grant.participant_identity == m.customer_identity(call_id)
    assert grant.livekit_url == "wss://lk.example" and grant.token_id
    assert grant.token == ""  # the API signs it: no join token is ever a payload in history
    assert h.fakes.count(act.CREATE_ROOM) == 1

    with pytest.raises(WorkflowAlreadyStartedError):  # a client never reuses a call id
        await start_call(h.client, call_id, CUSTOMER, config, task_queue=h.task_queue)

    handle = h.client.get_workflow_handle_for(CallWorkflow.run, m.call_workflow_id(call_id))
    # A second token for the same call (the customer reloaded the page): same room, once.
    again = await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest(CUSTOMER))
    assert again.room_name == grant.room_name and h.fakes.count(act.CREATE_ROOM) == 1
    assert again.token_id not in ("", grant.token_id)

    ended = await end_call(h.client, call_id, "customer asked a supervisor", by="supervisor")
    assert ended.reason == "customer asked a supervisor"
    result = await handle.result()
    assert result.status == "completed" and result.end_reason == "customer asked a supervisor"
    with pytest.raises(RPCError) as closed:  # a finished call answers NOT_FOUND to updates
        await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest(CUSTOMER))
    assert closed.value.status == RPCStatusCode.NOT_FOUND
