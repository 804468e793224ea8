"""The call's room asked of LiveKit when it has gone quiet (workflow code, mixed into
CallWorkflow): a lost `participant_left` or `room_finished` webhook is found, so no call waits
out its max duration because one webhook was dropped.

The pattern is the recorder's for a lost `egress_ended`: a durable timer, then an activity
asking LiveKit. While the call is in progress, once it has heard nothing from its room (no
line, no participant webhook) for `room_check_after_s`, `get_room_presence` asks LiveKit
(`ListRooms`, `ListParticipants`) whether the room is still there and whether the customer and
agent the call believes are in it are. What LiveKit says stands in for the webhook that never
came, through the same handlers: a room gone ends the call `room_finished` (by `livekit`); a
customer gone starts the rejoin grace (then `customer_left`); an agent gone is replaced
(healing). Each finding is a `status` event with `room_reconciled`; a check LiveKit could not
answer is one with `room_check_failed`, and the next comes after another quiet period.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.events as ev
    import core.models as m

# Workflow code: runs inside the sandbox with the call workflow.
from workflows.common import QUICK_RETRY, QuietWatch, cause, iso
from workflows.healing import ROOM_GONE_END_REASON
from workflows.ledger import now

if TYPE_CHECKING:
    from workflows.ledger import CallLedger


class RoomWatch:
    """The room half of CallWorkflow (it supplies `book`, `cfg`, `call_id`, `room`, the
    `participant_left` handler and `_room_news_at`, set by the participant handlers)."""

    book: CallLedger
    cfg: m.CallConfig
    call_id: str
    room: str  # the call's LiveKit room (m.call_room)
    _room_news_at: float

    if TYPE_CHECKING:

        def participant_left(self, sig: m.ParticipantLeft) -> None: ...  # CallWorkflow's

    def _room_heard_at(self) -> float:
        return max(self.book.s.last_heard_at, self._room_news_at)

    def _room_quiet_watch(self) -> QuietWatch:
        """Asks LiveKit about the room after each quiet period (on the call's one quiet timer:
        `watch_quiet`). A check counts as news: the next comes a whole period later."""
        checked_at = now()

        async def check() -> None:
            nonlocal checked_at
            checked_at = now()
            await self._check_room()

        return QuietWatch("room check", lambda: max(self._room_heard_at(), checked_at),
                          self.cfg.room_check_after_s, check)  # fmt: skip

    def _expected_in_room(self) -> dict[str, str]:
        """Identity -> kind of whoever the call believes is in the room now."""
        s = self.book.s
        out: dict[str, str] = {}
        if not s.customer_away_since:
            for p in s.participants:
                if p.kind == "customer" and not p.left_at:
                    out[p.identity] = "customer"
        left = {p.identity for p in s.participants if p.kind == "agent" and p.left_at}
        if s.agent_identity and not s.agent_lost_at and s.agent_identity not in left:
            out[s.agent_identity] = "agent"
        return out

    async def _check_room(self) -> None:
        expected = self._expected_in_room()
        try:
            found = await workflow.execute_activity(
                act.GET_ROOM_PRESENCE,
                act.RoomPresenceQuery(self.call_id, self.room, list(expected)),
                result_type=act.RoomPresence,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=QUICK_RETRY,
            )
        except ActivityError as err:
            self.book.emit(ev.Status(status=self.book.status, room_check_failed=cause(err)))
            return
        if self.book.end is not None:
            return  # ended meanwhile: nothing to reconcile
        if not found.exists:
            self.book.emit(ev.Status(status=self.book.status, room_reconciled="room_gone"))
            self.book.request_end(ROOM_GONE_END_REASON, "livekit")
            return
        # Only who is still expected after the await: a webhook may have come in meanwhile.
        still = self._expected_in_room()
        for identity in found.missing:
            kind = still.get(identity)
            if kind is None or self.book.end is not None:
                continue
            self.book.emit(ev.Status(status=self.book.status, room_reconciled=f"{kind}_absent"))
            self.participant_left(m.ParticipantLeft(
                id=f"room-check-{iso(now())}-{identity}", identity=identity, kind=kind,
                at=iso(now()),
            ))  # fmt: skip
