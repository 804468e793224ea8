"""devstack's scripted conversation drives a real call through the product's own paths:
the customer joins (webhook), lines arrive as signals, a keyword alert fires, the customer
hangs up (webhook) and the recording is stored: the emulator uploaded the file to the staging
bucket as Egress does, the worker read it from there with credentials, and removed it. And the
desk end to end: the stand-in's hand-off reaches a rep who set themselves available, who gets
the offer, accepts it, is on the call, and wraps up when the customer hangs up. A callback's
call opens as the agent's does."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from agent.greetings import callback_greeting
from core.call_links import link_callback_call
from core.settings import Settings
from devstack.standin import HANDOFF, SCRIPT, converse
from devstack.up import analysis_settings
from tests.api.conftest import (  # noqa: F401
    REP,
    SUPERVISOR,
    ApiStack,
    _api_stack_session,
    api_stack,
)


def standin_settings(stack: ApiStack) -> Settings:
    """The stand-in stores its lines through the API, as the agent does: this test's API."""
    api = urlsplit(stack.api.url)
    return stack.settings.model_copy(update={"API_HOST": api.hostname, "API_PORT": api.port})


async def test_a_scripted_call_ends_with_its_lines_an_alert_and_a_stored_recording(
    api_stack: ApiStack,  # noqa: F811
) -> None:
    started = await api_stack.api.http("POST", "/api/calls", json_body={"customer_name": "Stan"})
    assert started.status == 201, started.body
    call_id, room = started.body["call_id"], started.body["room_name"]

    await converse(standin_settings(api_stack), api_stack.livekit.control_url, room, pace_s=0.2,
                   hold_s=0.5)  # fmt: skip

    for _ in range(150):
        call = await api_stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if call.body["status"] == "completed" and call.body["recording_status"] == "stored":
            break
        await asyncio.sleep(0.2)
    assert (call.body["status"], call.body["recording_status"]) == ("completed", "stored"), (
        call.body
    )
    assert call.body["end_reason"] == "customer_left"
    assert call.body["keyword_alerts"] == 1  # "Can I speak to a manager ..."

    page = await api_stack.api.http("GET", f"/api/calls/{call_id}/transcript", token=SUPERVISOR)
    texts = [line["text"] for line in page.body["lines"]]
    assert texts[0].startswith("Hello! Welcome to CME Auto Sales")
    assert "this call is recorded" in texts[0]  # the disclosure that lets recording start
    assert texts[1:] == [text for speaker, text in SCRIPT if speaker != HANDOFF]

    rec = await api_stack.api.http("GET", f"/api/calls/{call_id}/recording", token=SUPERVISOR)
    assert rec.status == 200 and rec.body["size_bytes"] > 0, rec.body

    # After the call: analysed by the local method (no model is configured), as `make dev` does.
    for _ in range(300):
        got = await api_stack.api.http("GET", f"/api/calls/{call_id}/analysis", token=SUPERVISOR)
        if got.status == 200:
            break
        await asyncio.sleep(0.2)
    assert got.status == 200 and got.body["status"] == "done", got.body
    assert got.body["method"] == "local" and got.body["analysis"]["method"] == "local"
    card = {item["id"]: item for item in got.body["analysis"]["scorecard"]}
    assert list(card) == ["greeted_and_named", "recording_disclosed", "need_identified",
                          "accurate_answers_from_tools", "next_step_agreed"]  # fmt: skip
    ids = [line["data"]["id"] for line in page.body["lines"]]
    assert card["recording_disclosed"]["passed"] is True  # the greeting says it
    assert card["recording_disclosed"]["evidence"] == [ids[0]]
    assert card["need_identified"]["evidence"] == [ids[1]]  # "I'm looking for a used pickup"
    assert card["accurate_answers_from_tools"]["passed"] is None  # the lexicon cannot judge it
    assert got.body["outcome"] in ("follow_up", "handed_off")

    settings = api_stack.settings
    egresses = [
        e.info
        for e in api_stack.livekit.handle.emulator.egresses.values()
        if e.info.room_name == room
    ]
    (info,) = egresses
    staged = f"http://{settings.MINIO_ENDPOINT}/{settings.EGRESS_BUCKET}/"
    assert info.file_results[0].location.startswith(staged), info.file_results[0].location
    from activities import minio_client

    left = minio_client(settings).list_objects(
        settings.EGRESS_BUCKET, prefix=f"conversations/{call_id}", recursive=True
    )
    assert [o.object_name for o in left] == []  # the staging copy is gone once stored


async def test_the_stand_ins_hand_off_is_taken_by_a_rep_from_the_desk(
    api_stack: ApiStack,  # noqa: F811
) -> None:
    api = api_stack.api
    r = await api.http("PUT", "/api/desk/me", token=REP, json_body={"state": "available"})
    assert r.status == 200 and r.body["state"] == "available", r.body
    started = await api.http("POST", "/api/calls", json_body={"customer_name": "Stan"})
    call_id, room = started.body["call_id"], started.body["room_name"]
    settings = standin_settings(api_stack)
    talk = asyncio.create_task(
        converse(settings, api_stack.livekit.control_url, room, pace_s=0.2, hold_s=20)
    )
    try:
        offer = None
        for _ in range(150):
            offers = (await api.http("GET", "/api/desk/offers", token=REP)).body["offers"]
            if offers:
                (offer,) = offers
                break
            await asyncio.sleep(0.2)
        assert offer is not None and offer["call_id"] == call_id and offer["skill"] == "sales"
        assert "financing" in offer["reason"]
        assert any("manager" in line["text"] for line in offer["briefing"]["last_lines"])
        took = await api.http("POST", f"/api/desk/offers/{offer['offer_id']}/accept", token=REP)
        assert took.status == 201, took.body
        await api_stack.livekit.join_with_token(room, took.body["token"], kind="supervisor")
        me = (await api.http("GET", "/api/desk/me", token=REP)).body
        assert (me["state"], me["call_id"]) == ("busy", call_id)
        rep = took.body["participant_identity"]
        for _ in range(150):  # the call shows the rep (the emulator's webhook, then the workflow)
            call = await api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
            kinds = {p["identity"]: p["kind"] for p in call.body["state"]["participants"]}
            if rep in kinds:
                break
            await asyncio.sleep(0.2)
        assert kinds.get(rep) == "rep", kinds
        await talk  # the customer hangs up after holding
        for _ in range(150):
            me = (await api.http("GET", "/api/desk/me", token=REP)).body
            if me["state"] == "wrap_up":
                break
            await asyncio.sleep(0.2)
        assert me["state"] == "wrap_up"  # the call ended: the rep wraps up
        back = await api.http("PUT", "/api/desk/me", token=REP, json_body={"state": "available"})
        assert back.body["state"] == "available"
    finally:
        talk.cancel()
        await api.http("PUT", "/api/desk/me", token=REP, json_body={"state": "offline"})


def test_make_dev_analyses_each_call_by_the_local_method_unless_a_model_is_set() -> None:
    assert analysis_settings({}) == {"ANALYSIS_METHOD": "local", "ANALYSIS_DELAY_S": "2"}
    assert (
        analysis_settings({"ANALYSIS_LLM_BASE_URL": "http://127.0.0.1:8080/v1"})["ANALYSIS_METHOD"]
        == "auto"
    )
    assert analysis_settings({"ANALYSIS_METHOD": "llm"})["ANALYSIS_METHOD"] == "llm"


async def test_the_stand_in_opens_a_callbacks_call_as_the_agent_does(
    api_stack: ApiStack,  # noqa: F811
    pg_dsn: str,
) -> None:
    """A call a callback placed: the stand-in asks the API for its opening and says who calls
    and why, in the same words as Sarah (agent.greetings.callback_greeting)."""
    started = await api_stack.api.http("POST", "/api/calls", json_body={"customer_name": "Cal"})
    assert started.status == 201, started.body
    call_id, room = started.body["call_id"], started.body["room_name"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        callback_id = f"cb{call_id}"
        await conn.execute(
            "INSERT INTO callbacks (callback_id, phone, timezone, reason, status, at, due_at) "
            "VALUES ($1, '+15550100001', 'UTC', 'the Silverado test drive', 'dialing', now(), "
            "now())",
            callback_id,
        )
        await link_callback_call(conn, call_id, "", callback_id)
    finally:
        await conn.close()
    settings = standin_settings(api_stack)
    await converse(settings, api_stack.livekit.control_url, room, pace_s=0.2, hold_s=0.5)
    for _ in range(150):
        page = await api_stack.api.http("GET", f"/api/calls/{call_id}/transcript", token=SUPERVISOR)
        if page.status == 200 and page.body["lines"]:
            break
        await asyncio.sleep(0.2)
    first = page.body["lines"][0]["text"]
    assert first == callback_greeting(settings.RECORDING_CONSENT, "the Silverado test drive")
    assert "You asked us to call you back about the Silverado test drive." in first
