"""The desk's activities: a call's hand-off into the queue, its leaving, and what a waiting
caller must hear.

`enqueue_handoff` and `leave_desk` run for the call's workflow (a workflow cannot
signal-with-start another); both are idempotent (the desk ignores a call it already has, or
does not have). `tell_caller` runs for the desk: it passes the announcement to the agents in
the caller's room as a server data packet on topic `desk.notice` (the agent says it, see
agent/desk.py); a room that is gone means the call ended, and there is no one to tell.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from livekit import api as lkapi
from livekit.protocol.models import DataPacket, ParticipantInfo
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

import core.desk as d
from activities import types as act
from activities.livekit import livekit_error
from core.log import get_logger
from core.models import room_name_for
from workflows.desk_client import DeskClient

log = get_logger("activities.desk")
NOTICE_TOPIC = "desk.notice"


class DeskActivities:
    def __init__(self, desk: DeskClient, lk: lkapi.LiveKitAPI | None) -> None:
        self.desk = desk
        self.lk = lk

    @activity.defn(name=act.ENQUEUE_HANDOFF)
    async def enqueue_handoff(self, req: d.Enqueue) -> None:
        await self.desk.enqueue(req)
        log.info("desk_enqueued", call_id=req.call_id, skill=req.skill, by=req.by)

    @activity.defn(name=act.LEAVE_DESK)
    async def leave_desk(self, req: d.CallLeft) -> None:
        try:
            await self.desk.call_left(req)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # No desk running: nothing holds the call.

    @activity.defn(name=act.TELL_CALLER)
    async def tell_caller(self, note: d.Announcement) -> None:
        if self.lk is None:
            return
        room = note.room or room_name_for(note.call_id)
        try:
            resp = await self.lk.room.list_participants(lkapi.ListParticipantsRequest(room=room))
            agents = [p.identity for p in resp.participants
                      if p.kind == ParticipantInfo.Kind.AGENT]  # fmt: skip
            if not agents:
                log.info("desk_notice_no_agent", call_id=note.call_id, notice=note.notice)
                return
            await self.lk.room.send_data(lkapi.SendDataRequest(
                room=room, data=json.dumps(dataclasses.asdict(note)).encode(),
                kind=DataPacket.Kind.RELIABLE, destination_identities=agents, topic=NOTICE_TOPIC,
            ))  # fmt: skip
        except lkapi.TwirpError as exc:
            if exc.status == 404:
                return  # the room is gone: the call ended
            raise livekit_error(exc, "tell the caller") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise livekit_error(exc, "tell the caller") from exc
        log.info("desk_notice_sent", call_id=note.call_id, notice=note.notice)

    def activities(self) -> list[Callable[..., Any]]:
        return [self.enqueue_handoff, self.leave_desk, self.tell_caller]
