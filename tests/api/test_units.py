"""Pure pieces of the API: rate limiter, token table, input rules, webhook mapping."""

from __future__ import annotations

import pytest
from livekit.protocol.egress import EgressInfo, EgressStatus, FileInfo
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent
from pydantic import ValidationError

from api.auth import Principal, TokenTable
from api.domain.webhook_mapping import route
from api.schemas import CreateCallRequest, GetTokenRequest, check_person_name
from core.models import (
    SIGNAL_EGRESS_ENDED,
    SIGNAL_PARTICIPANT_JOINED,
    SIGNAL_ROOM_FINISHED,
    EgressUpdate,
    ParticipantJoined,
    RoomFinished,
    phone_call_id,
)
from core.settings import ApiToken


def test_token_table_finds_roles_and_never_the_token_itself() -> None:
    table = TokenTable({"s" * 20: "supervisor", "a" * 20: "admin"})
    sup = table.lookup("s" * 20)
    assert sup is not None and sup.role == "supervisor"
    assert "s" * 20 not in sup.id and sup.id.startswith("supervisor-")
    assert table.lookup("s" * 19) is None
    assert table.lookup("") is None
    assert table.lookup("a" * 20).role == "admin"  # type: ignore[union-attr]


def test_token_table_names_a_named_entry_by_its_name() -> None:
    table = TokenTable([ApiToken("ada", "a" * 20, "admin"), ApiToken(None, "s" * 20, "supervisor")])
    assert table.lookup("a" * 20) == Principal(role="admin", id="ada")
    unnamed = table.lookup("s" * 20)
    assert (
        unnamed is not None and unnamed.id.startswith("supervisor-") and "s" * 20 not in unnamed.id
    )


@pytest.mark.parametrize(
    "name", ["Ana", "José Ñúñez", "O'Brien-Smith Jr.", "李小龍", "  Ana   Lee "]
)
def test_person_names_accepted(name: str) -> None:
    assert check_person_name(name) == " ".join(name.split())


@pytest.mark.parametrize(
    "name", ["", "   ", "<script>", "a\nb", "x" * 65, "123", "Ana; DROP", "a\u200bb", "☎ Bob"]
)
def test_person_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_person_name(name)


def test_request_models_refuse_unknown_fields_and_wrong_types() -> None:
    with pytest.raises(ValidationError) as e:
        CreateCallRequest.model_validate({"customer_name": "Ana", "call_id": "x"})
    assert e.value.errors()[0]["loc"] == ("call_id",)
    with pytest.raises(ValidationError):
        CreateCallRequest.model_validate({"customer_name": 5})
    with pytest.raises(ValidationError):
        GetTokenRequest.model_validate({"roomName": "../etc"})
    assert GetTokenRequest.model_validate({"roomName": "room_1", "participantName": "Bo"})


def _event(**kw: object) -> WebhookEvent:
    return WebhookEvent(**kw)  # type: ignore[arg-type]


def test_webhook_participant_joined_maps_to_a_signal_with_a_stable_id() -> None:
    ev = _event(
        event="participant_joined",
        id="EV_1",
        created_at=1_700_000_000,
        room=Room(name="call-" + "a" * 20),
        participant=ParticipantInfo(identity="agent-1", kind=ParticipantInfo.Kind.AGENT),
    )
    room, routed = route(ev, b"{}")
    assert room == "call-" + "a" * 20
    assert routed is not None and routed.call_id == "a" * 20
    assert routed.signal == SIGNAL_PARTICIPANT_JOINED
    assert routed.arg == ParticipantJoined(
        id="lk-EV_1", identity="agent-1", kind="agent", at="2023-11-14T22:13:20+00:00"
    )
    # the same event resent maps to the same signal id
    assert route(ev, b"other body")[1].arg.id == "lk-EV_1"  # type: ignore[union-attr]


def test_a_phone_is_the_customer_and_joining_a_phone_room_starts_its_call() -> None:
    room_name = "phone_0001_AbCdEfGh1234"
    sip = ParticipantInfo(identity="sip_ab12", kind=ParticipantInfo.Kind.SIP)
    ev = _event(event="participant_joined", id="EV_9", room=Room(name=room_name), participant=sip)
    _, routed = route(ev, b"")
    assert routed is not None and routed.call_id == phone_call_id(room_name)
    assert routed.arg.kind == "customer" and routed.start_phone_room == room_name
    agent = ParticipantInfo(identity="agent-1", kind=ParticipantInfo.Kind.AGENT)
    _, routed = route(_event(event="participant_joined", id="EV_10", room=Room(name=room_name),
                             participant=agent), b"")  # fmt: skip
    assert routed is not None and routed.start_phone_room == room_name  # whoever comes first
    left = _event(event="participant_left", id="EV_11", room=Room(name=room_name), participant=sip)
    _, routed = route(left, b"")
    assert routed is not None and routed.arg.kind == "customer" and not routed.start_phone_room
    # A dialled phone (outbound) joins a call-<id> room: the customer, nothing started.
    ev = _event(event="participant_joined", id="EV_12", room=Room(name="call-" + "e" * 20),
                participant=ParticipantInfo(identity="customer-" + "e" * 20,
                                            kind=ParticipantInfo.Kind.SIP))  # fmt: skip
    _, routed = route(ev, b"")
    assert routed is not None and routed.arg.kind == "customer" and not routed.start_phone_room


def test_webhook_egress_ended_carries_the_file() -> None:
    info = EgressInfo(
        egress_id="EG_1",
        room_name="call-" + "b" * 20,
        status=EgressStatus.EGRESS_COMPLETE,
        file_results=[
            FileInfo(filename="x.ogg", location="http://h/x.ogg", size=1234, duration=2_500_000_000)
        ],
    )
    _, routed = route(_event(event="egress_ended", id="EV_2", egress_info=info), b"")
    assert routed is not None and routed.signal == SIGNAL_EGRESS_ENDED
    arg = routed.arg
    assert isinstance(arg, EgressUpdate)
    assert (arg.id, arg.egress_id, arg.status) == ("lk-EV_2", "EG_1", "EGRESS_COMPLETE")
    assert arg.file is not None and (arg.file.size, arg.file.duration_s) == (1234, 2.5)


def test_webhook_for_a_room_that_is_not_a_call_is_not_routed() -> None:
    ev = _event(event="participant_joined", id="EV_3", room=Room(name="lobby"))
    assert route(ev, b"") == ("lobby", None)
    assert route(_event(event="room_started", room=Room(name="call-" + "c" * 20)), b"")[1] is None


def test_webhook_room_finished_tells_the_call_its_room_is_gone() -> None:
    ev = _event(event="room_finished", id="EV_4", room=Room(name="call-" + "d" * 20))
    room, routed = route(ev, b"")
    assert room == "call-" + "d" * 20 and routed is not None
    assert (routed.call_id, routed.signal) == ("d" * 20, SIGNAL_ROOM_FINISHED)
    assert routed.arg == RoomFinished(id="lk-EV_4", at="")
    assert route(_event(event="room_finished", room=Room(name="lobby")), b"")[1] is None


async def test_report_outcome_survives_a_result_encrypted_with_a_retired_key() -> None:
    """A call's result encrypted with a key no longer configured: the report says so (the fuzz
    run found this as a 500)."""
    from types import SimpleNamespace

    from temporalio.client import WorkflowExecutionStatus

    from api.domain.workflows_client import CallsClient
    from core.codec import PayloadDecryptError

    class Handle:
        async def describe(self, **_: object) -> object:
            return SimpleNamespace(status=WorkflowExecutionStatus.COMPLETED)

        async def result(self, **_: object) -> object:
            raise PayloadDecryptError("payload encrypted with key id 'old', not configured")

    client = SimpleNamespace(get_workflow_handle=lambda *a, **k: Handle())
    out = await CallsClient(client, None).outcome("0" * 20)  # type: ignore[arg-type]
    assert out["status"] == "COMPLETED" and out["result"] is None
    assert "not decodable" in out["error"]
