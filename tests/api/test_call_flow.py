"""A whole call through the API, on the real stack: create -> the emulator's agent joins ->
lines signalled (as the agent does) reach a WebSocket subscriber in order -> supervisor
monitor / whisper / barge -> end -> the recording URL downloads the stored bytes -> erase."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
from google.protobuf.json_format import MessageToDict
from livekit import api as lkapi
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from core.models import (
    RecordingInput,
    TranscriptLine,
    call_workflow_id,
    new_call_id,
    recording_object_key,
    recording_workflow_id,
    room_name_for,
)
from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack, say_lines
from workflows.recording import RecordingWorkflow

LINES = [
    ("assistant", "Hello! Welcome to CME Auto Sales. My name is Sarah. This call is recorded."),
    ("customer", "Hi Sarah, I'm looking for a used pickup truck."),
    ("assistant", "We have a 2021 Ford F-150 Lariat with 38,900 miles for $41,500."),
    ("customer", "Can I book a test drive on Saturday?"),
]


async def next_of(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 15.0, **match: Any
) -> dict[str, Any]:
    """The next message of type `kind` whose data matches `match` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        m = json.loads(msg.data)
        if m["type"] == kind and all(m["data"].get(k) == v for k, v in match.items()):
            return m  # type: ignore[no-any-return]


async def wait_status(
    api_stack: ApiStack, call_id: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await api_stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if r.status == 200 and r.body["status"] in statuses:
            return r.body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"call {call_id} never reached {statuses}: {r.body}"
        await asyncio.sleep(0.2)


async def test_a_whole_call_through_the_api(
    api_stack: ApiStack, db: asyncpg.Connection, s3: Any
) -> None:
    api, lk = api_stack.api, api_stack.livekit

    r = await api.http("POST", "/api/calls", json_body={"customer_name": "Ana Lee"})
    assert r.status == 201, r.body
    grant = r.body
    call_id, room = grant["call_id"], grant["room_name"]
    assert room == f"call-{call_id}" and grant["livekit_url"] == lk.url
    claims = lkapi.TokenVerifier(lk.api_key, lk.api_secret).verify(grant["token"])
    assert claims.video is not None and claims.video.room == room
    assert claims.identity == grant["participant_identity"]

    # the customer connects; the emulator's agent has been dispatched and joins on its own
    await lk.join(room, grant["participant_identity"], kind="customer")
    live = await wait_status(api_stack, call_id, {"in_progress"})
    assert live["source"] == "workflow" and live["state"]["agent_identity"]
    agent = live["state"]["agent_identity"]

    async with api.ws(f"/ws/calls/{call_id}", token=SUPERVISOR) as ws:
        snap = json.loads((await ws.receive(timeout=5)).data)
        assert snap["type"] == "snapshot" and snap["call"]["call_id"] == call_id
        await say_lines(api_stack, call_id, [TranscriptLine(id=f"line-{i}", speaker=speaker,
                                                            text=text)
                                             for i, (speaker, text) in enumerate(LINES)])  # fmt: skip
        got = [await next_of(ws, "final_transcript") for _ in LINES]
        assert [(m["data"]["speaker"], m["data"]["text"]) for m in got] == LINES
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        # supervisors: listen (hidden, subscribe-only), whisper to the agent, barge in
        r = await api.http("POST", f"/api/calls/{call_id}/monitor", token=SUPERVISOR)
        assert r.status == 201, r.body
        mon = lkapi.TokenVerifier(lk.api_key, lk.api_secret).verify(r.body["token"])
        assert mon.video is not None and mon.video.room == room and mon.video.hidden
        assert (
            mon.video.can_subscribe and not mon.video.can_publish and not mon.video.can_publish_data
        )
        await next_of(ws, "supervisor_action", action="monitor")

        for _ in range(2):  # a retried whisper (same id) is recorded once, applied once
            r = await api.http(
                "POST",
                f"/api/calls/{call_id}/whisper",
                token=SUPERVISOR,
                json_body={"text": "Offer financing", "id": "w-1"},
            )
            assert r.status == 202 and r.body["id"] == "w-1", r.body
        await next_of(ws, "supervisor_action", action="whisper")
        rooms = (await lk.state())["rooms"]
        data = next(x for x in rooms if x["name"] == room)["data"]
        whisper = [d for d in data if d["topic"] == "supervisor.whisper"]
        assert len(whisper) == 2 and whisper[0]["destination_identities"] == [agent]
        sent = [json.loads(w["text"]) for w in whisper]
        assert [(w["text"], w["id"]) for w in sent] == [("Offer financing", "w-1")] * 2

        # take over and release: audited on the call, sent to the agent only
        for action in ("takeover", "release"):
            r = await api.http("POST", f"/api/calls/{call_id}/{action}", token=SUPERVISOR)
            assert r.status == 202 and r.body["action"] == action and r.body["id"], r.body
            await next_of(ws, "supervisor_action", action=action)
        rooms = (await lk.state())["rooms"]
        data = next(x for x in rooms if x["name"] == room)["data"]
        topics = [d["topic"] for d in data if d["topic"].startswith("supervisor.")]
        assert topics == ["supervisor.whisper"] * 2 + ["supervisor.takeover", "supervisor.release"]
        assert (await api.http("POST", f"/api/calls/{call_id}/takeover", token=OPS)).status == 403

        r = await api.http("POST", f"/api/calls/{call_id}/barge", token=ADMIN)
        assert r.status == 201 and r.body["can_publish"] is True and r.body["hidden"] is False
        await next_of(ws, "supervisor_action", action="barge")

        # ops may not end a call; a supervisor may, once
        assert (await api.http("POST", f"/api/calls/{call_id}/end", token=OPS)).status == 403
        r = await api.http(
            "POST", f"/api/calls/{call_id}/end", token=SUPERVISOR, json_body={"reason": "wrap up"}
        )
        assert r.status == 200 and r.body["status"] in ("ending", "completed"), r.body
        assert (await api.http("POST", f"/api/calls/{call_id}/end", token=SUPERVISOR)).status == 409
        await next_of(ws, "status", status="completed", timeout=30)
        await next_of(ws, "recording", timeout=45)

    done = await wait_status(api_stack, call_id, {"completed"})
    assert done["source"] == "database"
    for _ in range(100):
        r = await api.http("GET", f"/api/calls/{call_id}/recording", token=OPS)
        if r.status != 409:
            break
        await asyncio.sleep(0.3)
    assert r.status == 200, r.body
    link = r.body
    async with aiohttp.ClientSession() as plain, plain.get(link["url"]) as resp:
        assert resp.status == 200
        audio = await resp.read()
    stored = s3.client.get_object(s3.bucket, recording_object_key(call_id)).read()
    assert audio == stored and audio[:4] == b"OggS"
    assert len(audio) == link["size_bytes"] and hashlib.sha256(audio).hexdigest() == link["sha256"]
    assert link["duration_s"] > 0
    # Playback's time zero is the egress's start as LiveKit reported it (egress_updated).
    assert link["clock"] == "egress" and link["started_at"]
    assert [s["url"] for s in link["segments"]] == [link["url"]]

    # The post-call report joins the event log with the workflow's own result.
    r = await api.http("GET", f"/api/calls/{call_id}/report", token=SUPERVISOR)
    assert r.status == 200, r.body
    report = r.body
    assert [(x["speaker"], x["text"]) for x in report["transcript"]] == LINES
    assert (
        report["workflow"]["source"] == "temporal" and report["workflow"]["status"] == "COMPLETED"
    )
    assert report["workflow"]["result"]["line_count"] == len(LINES)
    # The recording is the pipeline's own report (the call no longer waits for it).
    assert report["recording"]["status"] == "stored"
    assert report["recording"]["segments"][0]["sha256"] == link["sha256"]
    assert report["recording"]["segments"][0]["clock"] == "egress"
    assert "whisper" in [a["action"] for a in report["supervisor_actions"]]

    r = await api.http("GET", f"/api/calls/{call_id}/transcript?after=0", token=OPS)
    assert [(x["speaker"], x["text"]) for x in r.body["lines"]] == LINES
    r = await api.http("GET", f"/api/calls/{call_id}/transcript?after={seqs[1]}", token=OPS)
    assert [x["text"] for x in r.body["lines"]] == [t for _, t in LINES[2:]]
    r = await api.http("GET", "/api/calls?status=ended&limit=200", token=SUPERVISOR)
    assert call_id in [c["call_id"] for c in r.body["calls"]]
    # the recording pipeline succeeded: nothing to retry
    r = await api.http("POST", f"/api/recordings/{call_id}/retry", token=OPS)
    assert r.status == 409, r.body

    # erasure (admin): recording, rows and histories go; who and when stay
    assert (await api.http("DELETE", f"/api/calls/{call_id}", token=SUPERVISOR)).status == 403
    r = await api.http("DELETE", f"/api/calls/{call_id}", token=ADMIN)
    assert r.status == 200 and r.body["status"] == "erased", r.body
    assert await db.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", call_id) == 0
    assert await db.fetchval("SELECT count(*) FROM calls WHERE call_id = $1", call_id) == 0
    assert not list(s3.client.list_objects(s3.bucket, prefix=recording_object_key(call_id)))
    erasure = await db.fetchrow("SELECT requested_by FROM erasures WHERE call_id = $1", call_id)
    assert erasure is not None and erasure["requested_by"].startswith("admin-")
    r = await api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
    assert r.status == 404 and r.error["code"] == "call_erased"
    r = await api.http("DELETE", f"/api/calls/{call_id}", token=ADMIN)
    assert r.status == 200 and r.body["status"] == "erased"


async def test_seed_widget_contract(api_stack: ApiStack) -> None:
    r = await api_stack.api.http(
        "POST", "/api/get-token", json_body={"roomName": "room_abc", "participantName": "Customer"}
    )
    assert r.status == 200, r.body
    assert r.body["roomName"] == r.body["room_name"] != "room_abc"  # the server chose the room
    assert r.body["token"] and r.body["participant_identity"]
    lk = api_stack.livekit
    claims = lkapi.TokenVerifier(lk.api_key, lk.api_secret).verify(r.body["token"])
    assert claims.video is not None and claims.video.room == r.body["roomName"]
    r = await api_stack.api.http("POST", f"/api/calls/{r.body['call_id']}/end", token=ADMIN)
    assert r.status == 200


async def test_codec_decodes_what_the_workflows_encrypted(
    api_stack: ApiStack, live_call_id: str
) -> None:

    raw = await api_stack.raw_client.get_workflow_handle(
        call_workflow_id(live_call_id)
    ).fetch_history()
    started = next(
        e for e in raw.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    )
    payload = started.workflow_execution_started_event_attributes.input.payloads[0]
    assert b"Contract Tester" not in payload.data  # encrypted at rest in Temporal
    r = await api_stack.api.http(
        "POST", "/codec/decode", token=SUPERVISOR, json_body={"payloads": [MessageToDict(payload)]}
    )
    assert r.status == 200, r.body
    decoded = base64.b64decode(r.body["payloads"][0]["data"])
    assert b"Contract Tester" in decoded
    assert (
        await api_stack.api.http("POST", "/codec/decode", token=OPS, json_body={"payloads": []})
    ).status == 403


async def test_ops_replays_a_failed_recording_pipeline(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    """A pipeline whose source is gone fails; ops restarts it with the same input (409 while it
    runs or when nothing failed), and the recording link says 409 until something is stored."""
    call_id = new_call_id()
    await db.execute(
        "INSERT INTO calls (call_id, room_name, status, recording_status) VALUES ($1, $2, 'completed', 'uploading')",
        call_id,
        room_name_for(call_id),
    )
    gone = f"{api_stack.livekit.url}/no/such/recording-{call_id}.ogg"
    inp = RecordingInput(
        call_id, room_name_for(call_id), "EG_gone", gone, 1000, 1.0, 1.0, retry_for_s=2
    )
    wid = recording_workflow_id(call_id)
    handle = await api_stack.client.start_workflow(
        RecordingWorkflow.run,
        inp,
        id=wid,
        task_queue=api_stack.settings.TEMPORAL_TASK_QUEUE,
        # Out of retries it waits for ops (release 2); the timeout ends it as a run that
        # failed, the case of runs from before release 2 (and of a reset or a terminate).
        execution_timeout=timedelta(seconds=20),
    )
    try:
        await handle.result()
        raise AssertionError("the pipeline should have failed")
    except WorkflowFailureError:
        pass
    r = await api_stack.api.http("GET", f"/api/calls/{call_id}/recording", token=OPS)
    assert r.status == 409 and r.error["code"] == "recording_not_stored", r.body
    assert (
        await api_stack.api.http("POST", f"/api/recordings/{call_id}/retry", token=SUPERVISOR)
    ).status == 403

    # Two ops retries at once: one restarts the pipeline, the other is told so (409, not 500).
    both = await asyncio.gather(
        *(api_stack.api.http("POST", f"/api/recordings/{call_id}/retry", token=OPS)
          for _ in range(2))
    )  # fmt: skip
    assert sorted(x.status for x in both) == [202, 409], [x.body for x in both]
    r = next(x for x in both if x.status == 202)
    assert r.body["status"] == "started", r.body
    new = await api_stack.client.get_workflow_handle(wid).describe()
    assert new.run_id != handle.result_run_id
    if new.status == WorkflowExecutionStatus.RUNNING:
        r = await api_stack.api.http("POST", f"/api/recordings/{call_id}/retry", token=OPS)
        assert r.status == 409, r.body
    history = await api_stack.client.get_workflow_handle(wid).fetch_history()
    [replayed] = await api_stack.client.data_converter.decode(
        history.events[0].workflow_execution_started_event_attributes.input.payloads,
        [RecordingInput],
    )
    assert (replayed.location, replayed.egress_id) == (gone, "EG_gone")  # the failed run's input
