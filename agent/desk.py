"""What the desk tells a waiting caller, in Sarah's words.

The desk's workflow decides (core/desk.py `Notice`) and its `tell_caller` activity sends the
notice to this agent as a server data packet on topic `desk.notice` (JSON of
`core.desk.Announcement`); only packets from the server (no sender participant) count. Sarah
says exactly what the desk knows: the place in the queue and the estimate (Asterisk's
announced hold time, rounded up to a minute; none before any call was answered), that no one
can come now (nobody signed in, or the longest wait reached) with the offer of a call back that
her `schedule_callback` books `via="queue"` (or, on a line without callbacks, plainly that she
cannot, and she keeps helping), or who is joining.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.desk import Notice

NOTICE_TOPIC = "desk.notice"


def notice_text(note: dict[str, Any], can_call_back: bool = False) -> str:
    """The sentence Sarah says for a desk notice ('' for one she cannot read). When no one can
    come she offers a call back if this line can book one (`can_call_back`: Sarah has the
    API's `schedule_callback`), and says plainly that she cannot if not."""
    kind = note.get("notice")
    if kind == Notice.POSITION:
        pos = int(note.get("position") or 0)
        place = "next in line" if pos == 1 else f"number {pos} in line"
        est = note.get("estimate_s")
        if est is None:
            wait = "I can't say yet how long it will take."
        elif float(est) < 60:
            wait = "It should be less than a minute."
        else:
            minutes = math.ceil(float(est) / 60)
            wait = f"The wait is about {minutes} minute{'s' if minutes > 1 else ''}."
        return f"You're {place} for a colleague. {wait} I can keep helping you meanwhile."
    if kind in (Notice.NO_REP, Notice.MAX_WAIT):
        if can_call_back:
            return ("I'm sorry: no colleague can come to the phone right now. I can arrange for "
                    "us to call you back at a time that suits you: would you like that? "
                    "Meanwhile I'm happy to keep helping you myself.")  # fmt: skip
        return ("I'm sorry: no colleague can come to the phone right now, and I can't arrange "
                "a call back on this line, but I'm here and happy to keep helping you myself.")  # fmt: skip
    if kind == Notice.JOINING:
        name = str(note.get("rep_name") or "").strip()[:64] or "A colleague"
        return f"{name} from our team is joining the call now to help you."
    return ""


def parse_notice(data: bytes) -> dict[str, Any] | None:
    """The notice in a packet, or None for one that is not a JSON object."""
    try:
        note = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return note if isinstance(note, dict) else None
