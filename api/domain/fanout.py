"""Live fan-out: PostgreSQL LISTEN -> WebSocket subscribers, one listener per API process.

Every write to `call_events` (the API storing a line, the workflow's activity storing what it
decided) goes through `append_call_event`, which NOTIFYs `core.notify.EVENTS_CHANNEL` with the
whole event `{"call_id", "seq", "kind", "at", "data"}` when it fits a notification (else the key
alone); interim transcripts are NOTIFYed on `INTERIM_CHANNEL` with the whole message and never
stored. Because every API instance LISTENs, any instance can serve any dashboard (the fan-out is
not in one process's memory), and an event that came whole reaches its dashboards without a
query.

Each subscriber has a bounded queue. The hub never waits for a subscriber: when a queue is full
it is emptied and replaced by one `resync` marker, and that subscriber (alone) catches up from the
table by sequence number. Subscribers drop what they already sent (`seq <= last`) and read the
table when they see a gap, so a lost notification or a reconnect of the listener costs a query,
never a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge

from api.domain import store
from api.errors import ValidationFailed
from core.log import get_logger
from core.models import EventKind
from core.notify import (
    EVENTS_CHANNEL,
    INTERIM_CHANNEL,
    NOTIFY_MAX_BYTES,
    parse_notification,
)

log = get_logger("api.fanout")

# Event kinds after which a call's row (status, counters) may have changed for the list view.
LIST_KINDS = frozenset(
    {EventKind.STATUS, EventKind.RECORDING, EventKind.SILENCE_ALERT, EventKind.KEYWORD_ALERT}
)
_LIST_FIELDS = (
    "status",
    "recording_status",
    "silence_alerts",
    "keyword_alerts",
    "agent_joined_at",
    "ended_at",
    "customer_name",
)

RESYNC = (-1, "")  # queue marker: the subscriber must catch up from the table
# The calls of one batch of notifications are read side by side on this many pool connections
# (the rest stay free for requests): read one after another, at 500 live calls the last call of
# a batch waited for dozens of queries before it (docs/benchmarks.md).
FETCH_CONCURRENCY = 4

SUBSCRIBERS = Gauge("api_ws_subscribers", "Open WebSocket subscriptions", ["kind"])
INLINE = Counter("api_ws_inline_events_total", "Events delivered from their notification alone")
RESYNCS = Counter("api_ws_resyncs_total", "Subscribers that overflowed and resynced from the table")
NOTIFICATIONS = Counter("api_pg_notifications_total", "NOTIFY messages received", ["channel"])

Item = tuple[int | None, str]  # (seq or None for unsequenced messages, JSON text)


class Subscription:
    """One WebSocket's view of the hub: `call_id` None means the live call list."""

    def __init__(self, call_id: str | None, maxsize: int) -> None:
        self.call_id = call_id
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize)
        self._overflowed = False

    def offer(self, item: Item) -> None:
        """Never blocks. On overflow the backlog is replaced by a single resync marker."""
        if self._overflowed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)
            RESYNCS.inc()

    def resync(self) -> None:
        if not self._overflowed:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._overflowed = True
            self._queue.put_nowait(RESYNC)

    async def get(self) -> Item:
        item = await self._queue.get()
        if item is RESYNC:
            self._overflowed = False
        return item


class LiveHub:
    def __init__(self, dsn: str, pool: asyncpg.Pool, *, queue_size: int = 256) -> None:
        self._dsn = dsn
        self._pool = pool
        self.queue_size = queue_size
        self._by_call: dict[str, set[Subscription]] = defaultdict(set)
        self._list_subs: set[Subscription] = set()
        self._last_seq: dict[str, int] = {}  # per call with subscribers: highest seq delivered
        self._last_listed: dict[str, dict[str, Any]] = {}
        self._inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the listener (fails loudly if PostgreSQL is not there) and start the workers."""
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="livehub-dispatch"),
            asyncio.create_task(self._watch(), name="livehub-watch"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
        await conn.add_listener(INTERIM_CHANNEL, self._on_notify)
        self._conn = conn
        log.info("live_listening", channels=f"{EVENTS_CHANNEL},{INTERIM_CHANNEL}")

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        NOTIFICATIONS.labels(channel).inc()
        self._inbox.put_nowait((channel, payload))

    async def _watch(self) -> None:
        """Keep the LISTEN connection alive; after a reconnect every subscriber resyncs."""
        delay = 0.5
        while not self._stopping:
            await asyncio.sleep(2.0)
            try:
                assert self._conn is not None
                await self._conn.fetchval("SELECT 1", timeout=5)
                delay = 0.5
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                log.warning("live_listener_lost")
            while not self._stopping:
                try:
                    if self._conn is not None:
                        self._conn.terminate()
                    await self._connect()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("live_listener_reconnect_failed", error=type(exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            for subs in list(self._by_call.values()):
                for sub in subs:
                    sub.resync()
            for sub in self._list_subs:
                sub.resync()

    # --- subscriptions --------------------------------------------------------------------------

    def subscribe(self, call_id: str | None) -> Subscription:
        sub = Subscription(call_id, self.queue_size)
        if call_id is None:
            self._list_subs.add(sub)
            SUBSCRIBERS.labels("list").inc()
        else:
            self._by_call[call_id].add(sub)
            SUBSCRIBERS.labels("call").inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.call_id is None:
            if sub in self._list_subs:
                self._list_subs.discard(sub)
                SUBSCRIBERS.labels("list").dec()
            return
        subs = self._by_call.get(sub.call_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            SUBSCRIBERS.labels("call").dec()
            if not subs:
                del self._by_call[sub.call_id]
                self._last_seq.pop(sub.call_id, None)

    # --- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self._process(batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The table is the truth: subscribers that may have missed something catch up.
                log.warning("live_dispatch_failed", error=type(exc).__name__)
                for _channel, payload in batch:
                    call_id = parse_notification(payload).get("call_id")
                    for sub in self._by_call.get(str(call_id), ()):
                        sub.resync()

    async def _process(self, batch: list[tuple[str, str]]) -> None:
        seqs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        listed: set[str] = set()
        for channel, payload in batch:
            data = parse_notification(payload)
            call_id = data.get("call_id")
            if not isinstance(call_id, str):
                log.warning("live_bad_notification", channel=channel)
                continue
            if channel == INTERIM_CHANNEL:
                self._deliver(call_id, (None, json.dumps(data)))
                continue
            seqs[call_id].append(data)
            if data.get("kind") in LIST_KINDS or data.get("kind") is None:
                listed.add(call_id)
        reads = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(call_id: str, found: list[dict[str, Any]]) -> None:
            async with reads:
                await self._fetch_and_deliver(call_id, found)

        done = await asyncio.gather(
            *(fetch(c, f) for c, f in seqs.items() if self._by_call.get(c)),
            return_exceptions=True,
        )
        for outcome in done:  # every read has finished: the caller may resync the batch
            if isinstance(outcome, BaseException):
                raise outcome
        if self._list_subs and listed:
            await self._push_list(sorted(listed))

    async def _fetch_and_deliver(self, call_id: str, notified: list[dict[str, Any]]) -> None:
        """Deliver what the notifications announced. They carry the whole event when it fits
        (`append_call_event`), so an unbroken run after what was delivered goes out as it came;
        a gap, a lost notification or a key-only one costs one read of the table."""
        seqs = [n.get("seq") for n in notified]
        known = [s for s in seqs if isinstance(s, int)]
        last = self._last_seq.get(call_id)
        if not known or (last is None and len(known) < len(seqs)):
            for sub in self._by_call[call_id]:
                sub.resync()
            return
        after = last if last is not None else min(known) - 1
        inline = sorted((n for n in notified if "data" in n and n["seq"] > after),
                        key=lambda n: n["seq"])  # fmt: skip
        if [n["seq"] for n in inline] == list(range(after + 1, max(known) + 1)):
            events = [_message(call_id, n) for n in inline]
            INLINE.inc(len(events))
        else:
            events = await store.events_after(self._pool, call_id, after, upto=max(known))
        for event in events:
            self._deliver(call_id, (event["seq"], json.dumps(event)))
        if events:
            self._last_seq[call_id] = max(after, events[-1]["seq"])

    def _deliver(self, call_id: str, item: Item) -> None:
        for sub in self._by_call.get(call_id, ()):
            sub.offer(item)

    async def _push_list(self, call_ids: list[str]) -> None:
        for call in await store.get_calls(self._pool, call_ids):
            view = {k: call.get(k) for k in _LIST_FIELDS}
            if self._last_listed.get(call["call_id"]) == view:
                continue
            if call["live"]:
                self._last_listed[call["call_id"]] = view
            else:
                self._last_listed.pop(call["call_id"], None)
            text = json.dumps({"type": "call_updated", "call": call})
            for sub in self._list_subs:
                sub.offer((None, text))


def _message(call_id: str, note: dict[str, Any]) -> dict[str, Any]:
    """A notification that carries its event, as the dashboard message `store.event_row` makes."""
    return {
        "type": note["kind"],
        "call_id": call_id,
        "seq": note["seq"],
        "at": note.get("at"),
        "data": note["data"],
    }


async def publish_interim(pool: asyncpg.Pool, message: dict[str, Any]) -> None:
    """NOTIFY an interim transcript to every API instance (never stored).

    UTF-8 JSON, not ASCII escapes (an emoji is 4 bytes, not 12), so that what
    `api.schemas.InterimRequest` accounted for is what pg_notify gets; a message that still
    would not fit is a 422 naming `text`, never a 500 from the server.
    """
    payload = json.dumps(message, ensure_ascii=False)
    if len(payload.encode()) > NOTIFY_MAX_BYTES:
        raise ValidationFailed("text: is too long for a live message", field="text")
    await pool.execute("SELECT pg_notify($1, $2)", INTERIM_CHANNEL, payload)
