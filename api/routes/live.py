"""Live WebSockets for dashboards (the agent's interim transcripts come in via `api.routes.agent`).

`WS /ws/calls/{call_id}?after=<seq>`: first a `snapshot` (the call), then every event with
`seq > after` from the table, then live events as they are appended. Each event message is
`{"type", "call_id", "seq", "at", "data"}`; `type` is a `core.models.EventKind` value
(`final_transcript`, `silence_alert`, `keyword_alert`, `status`, `recording`, `supervisor_action`,
...). `interim_transcript` messages have `seq: null` (they are never stored). A `resync` message
means the server caught this client up from the table after it fell behind; nothing is lost.
A client that reconnects with `?after=<last seq it saw>` misses nothing.

`WS /ws/calls`: a `snapshot` of live calls (the first `LIST_PAGE`; further pages follow as
`snapshot_more` messages, each with `more` saying whether another follows), then `call_updated`.

WebSockets authenticate with `Authorization: Bearer` or the subprotocol pair `bearer, <token>`
(what browsers can send), or a signed-in dashboard's `cc_session` cookie from a page of this
API's own origin (4403 from another); a `?token=` in the URL is refused (4401), as URLs end up
in logs.
A refused socket gets an `error` frame and close code 4000 + the HTTP status (4401 no/invalid
token, 4403 wrong role, 4404 no such call, 4422 bad `after` or id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from api.auth import DESK, READ_CALLS, WS_SUBPROTOCOL, authenticate
from api.domain import store
from api.domain.fanout import RESYNC, Subscription
from api.errors import ApiError, Forbidden, NotFound
from api.schemas import AfterQuery
from api.validation import check_call_id, parse_query
from core.log import get_logger
from core.models import call_workflow_id, room_name_for

log = get_logger("api.live")
bp = Blueprint("live", url_prefix="/ws/calls")

_PAGE = 1000
LIST_PAGE = 200  # active calls a list snapshot message carries


async def _admit(request: Request) -> int:
    """Authenticate and validate a WebSocket request; return its `after`. A rep (who may not
    read calls) may follow the one call they are on at the desk, and no other."""
    call_id = request.match_info.get("call_id")
    try:
        await authenticate(request, READ_CALLS, websocket=True)
    except Forbidden:
        if call_id is None:
            raise
        me = await authenticate(request, DESK, websocket=True)
        snap = await request.app.ctx.res.desk.snapshot()
        rep = next((r for r in snap.reps if r.id == me.id), None)
        if rep is None or rep.state != "busy" or rep.call_id != call_id:
            raise Forbidden(
                "a rep follows only the call they are on", code="not_your_call"
            ) from None
    if call_id is not None:
        check_call_id(call_id)
    return parse_query(request, AfterQuery).after


async def _refuse(ws: WebsocketImplProtocol, err: ApiError) -> None:
    """Browsers cannot read the status of a failed upgrade, so refusals happen after it: an
    error frame, then close code 4000 + HTTP status (4401, 4403, 4404, 4422)."""
    await _send(ws, err.body() | {"type": "error"})
    await ws.close(code=4000 + err.status, reason=err.message[:120])


async def _send(ws: WebsocketImplProtocol, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message, default=str))


async def _replay(ws: WebsocketImplProtocol, call_id: str, after: int, pool: Any) -> int:
    """Send every stored event with seq > after; return the last seq sent."""
    while True:
        events = await store.events_after(pool, call_id, after, limit=_PAGE)
        for event in events:
            await _send(ws, event)
            after = event["seq"]
        if len(events) < _PAGE:
            return after


async def _pump_call(
    ws: WebsocketImplProtocol, sub: Subscription, call_id: str, after: int, pool: Any
) -> None:
    last = await _replay(ws, call_id, after, pool)
    while True:
        item = await sub.get()
        if item is RESYNC:
            await _send(ws, {"type": "resync", "call_id": call_id, "after": last})
            last = await _replay(ws, call_id, last, pool)
            continue
        seq, text = item
        if seq is not None:
            if seq <= last:
                continue
            if seq > last + 1:
                # A notification was lost or arrived out of order: the table has the truth.
                last = await _replay(ws, call_id, last, pool)
                if seq <= last:
                    continue
            last = seq
        await _send(ws, text)


async def _send_list_snapshot(ws: WebsocketImplProtocol, pool: Any) -> None:
    """Every active call, `LIST_PAGE` a message: `snapshot` (replaces what the client had),
    then `snapshot_more` pages (added to it); `more` says whether another page follows."""
    calls, cursor = await store.list_calls(pool, "active", LIST_PAGE, None)
    await _send(ws, {"type": "snapshot", "calls": calls, "more": cursor is not None})
    while cursor is not None:
        calls, cursor = await store.list_calls(pool, "active", LIST_PAGE, cursor)
        await _send(ws, {"type": "snapshot_more", "calls": calls, "more": cursor is not None})


async def _pump_list(ws: WebsocketImplProtocol, sub: Subscription, pool: Any) -> None:
    while True:
        item = await sub.get()
        if item is RESYNC:
            await _send_list_snapshot(ws, pool)
            continue
        await _send(ws, item[1])


async def _serve(ws: WebsocketImplProtocol, pump: asyncio.Task[None]) -> None:
    """Run the pump until the client goes away (or the pump ends); never leak the task."""
    try:
        while not pump.done():
            recv = asyncio.ensure_future(ws.recv())
            done, _ = await asyncio.wait({recv, pump}, return_when=asyncio.FIRST_COMPLETED)
            if recv in done:
                if recv.exception() is not None or recv.result() is None:
                    break
            else:
                recv.cancel()
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await pump


@bp.websocket("", subprotocols=[WS_SUBPROTOCOL])
async def ws_calls(request: Request, ws: WebsocketImplProtocol) -> None:
    res = request.app.ctx.res
    try:
        await _admit(request)
    except ApiError as err:
        await _refuse(ws, err)
        return
    sub = res.live.subscribe(None)
    try:
        await _send_list_snapshot(ws, res.db)
        await _serve(ws, asyncio.create_task(_pump_list(ws, sub, res.db)))
    except ConnectionClosed:
        pass
    finally:
        res.live.unsubscribe(sub)


@bp.websocket("/<call_id:str>", subprotocols=[WS_SUBPROTOCOL])
async def ws_call(request: Request, ws: WebsocketImplProtocol, call_id: str) -> None:
    res = request.app.ctx.res
    try:
        after = await _admit(request)
        call = await store.get_call(res.db, call_id)
        if call is None and not await _workflow_exists(request, call_id):
            raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
    except ApiError as err:
        await _refuse(ws, err)
        return
    sub = res.live.subscribe(call_id)  # before the snapshot: nothing appended from now is missed
    try:
        call = await store.get_call(res.db, call_id) or {
            "call_id": call_id,
            "room_name": room_name_for(call_id),
            "live": True,
        }
        await _send(ws, {"type": "snapshot", "call": call, "after": after})
        await _serve(ws, asyncio.create_task(_pump_call(ws, sub, call_id, after, res.db)))
    except ConnectionClosed:
        pass
    finally:
        res.live.unsubscribe(sub)


async def _workflow_exists(request: Request, call_id: str) -> bool:
    if await store.get_erasure(request.app.ctx.res.db, call_id) is not None:
        return False  # its history may linger in Temporal for a minute; the call is gone
    return await request.app.ctx.res.calls.is_running(call_workflow_id(call_id)) is not None
