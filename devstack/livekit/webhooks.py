"""Webhook delivery as livekit-server does it, plus the faults tests ask for.

Each event is the protobuf JSON of a `livekit.WebhookEvent` (camelCase, int64 as strings,
with `id` "EV_..." and `createdAt` in unix seconds), posted with
`Content-Type: application/webhook+json` and `Authorization: <jwt>` whose `sha256` claim is
the base64 SHA-256 of the body. As livekit/protocol's `ResourceURLNotifier` does, events are
queued per resource (the egress id for egress events, else the room name, so a room's
participant events share its queue): each resource's events go out one at a time in the order
they happened, and one resource's events never wait behind another's. An event that waited in
its queue longer than `max_age_s` (LiveKit's default 30 s) is dropped, not sent late. `emit`
never blocks its caller. A connection error, a 5xx or a 429 is retried with exponential backoff;
any other non-2xx is final. Every outcome is logged and kept in `history` (last 500) for
`GET /_emulator/state`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict
from livekit.protocol.webhook import WebhookEvent

from core.log import get_logger

from .auth import webhook_token
from .faults import Faults
from .ids import new_id

log = get_logger("devstack.livekit.webhooks")

_HISTORY = 500


@dataclass
class Delivery:
    """One event's fate, as the emulator saw it."""

    id: str
    event: str
    url: str
    outcome: str = "queued"  # delivered | failed | dropped | queued
    status: int | None = None
    attempts: int = 0
    faults: list[str] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Item:
    event: WebhookEvent
    body: bytes
    delivery: Delivery
    signed: bool = True
    bad_signature: bool = False
    queued_at: float = field(default_factory=time.monotonic)


def resource_key(event: WebhookEvent) -> str:
    """The queue an event waits in, as LiveKit keys it: egress, else room, else participant."""
    if event.HasField("egress_info"):
        return f"egress:{event.egress_info.egress_id}"
    if event.HasField("room"):
        return f"room:{event.room.name}"
    if event.HasField("participant"):
        return f"participant:{event.participant.identity}"
    return "default"


def encode_event(event: WebhookEvent) -> bytes:
    """The exact bytes posted: compact protobuf JSON (the signature covers these bytes)."""
    return json.dumps(MessageToDict(event), separators=(",", ":")).encode()


class WebhookSender:
    """Signs and posts webhook events to `url` from one background task."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        url: str,
        faults: Faults,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        max_age_s: float = 30.0,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._faults = faults
        self._retries = retries
        self._backoff_s = backoff_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_age_s = max_age_s
        # Per-resource send queues and their workers (created on first use, ended when empty).
        self._resources: dict[str, asyncio.Queue[_Item]] = {}
        self._resource_workers: dict[str, asyncio.Task[None]] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._held: list[tuple[_Item, float]] = []  # reorder fault: (item, deadline)
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self.history: deque[Delivery] = deque(maxlen=_HISTORY)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._worker = asyncio.create_task(self._run(), name="livekit-emulator-webhooks")

    async def stop(self, drain_s: float = 1.0) -> None:
        """Deliver what is queued for up to `drain_s`, then cancel and close the session."""
        deadline = time.monotonic() + drain_s
        while not self.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        tasks = [t for t in (self._worker, *self._side_tasks, *self._resource_workers.values())
                 if t is not None]  # fmt: skip
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def emit(self, event: WebhookEvent) -> Delivery:
        """Stamp `id` and `createdAt` and queue the event; returns its delivery record."""
        event.id = new_id("EV_")
        event.created_at = int(time.time())
        delivery = Delivery(event.id, event.event, self.url)
        self.history.append(delivery)
        if not self.url:
            delivery.outcome = "dropped"
            delivery.error = "no webhook URL configured"
            return delivery
        self._queue.put_nowait(_Item(event, encode_event(event), delivery))
        return delivery

    def idle(self) -> bool:
        """True when nothing is queued, held, delayed or being sent."""
        busy = any(d.outcome == "queued" for d in self.history)
        return (self._queue.empty() and not self._held and not self._side_tasks and not busy
                and not self._resources)  # fmt: skip

    async def _run(self) -> None:
        while True:
            timeout = None
            if self._held:
                timeout = max(0.0, min(d for _, d in self._held) - time.monotonic())
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                await self._release_held(expired_only=True)
                continue
            try:
                if not await self._dispatch(item):
                    await self._release_held(expired_only=False)
            except Exception:  # the sender must outlive one bad event; it is logged and marked
                item.delivery.outcome = "failed"
                log.exception("webhook_sender_error", webhook_id=item.delivery.id)

    async def _release_held(self, expired_only: bool) -> None:
        now = time.monotonic()
        keep: list[tuple[_Item, float]] = []
        release: list[tuple[_Item, float]] = []
        for item, deadline in self._held:
            (release if (not expired_only or deadline <= now) else keep).append((item, deadline))
        self._held = keep
        for item, _ in release:
            self._queue_send(item)

    async def _dispatch(self, item: _Item) -> bool:
        """Send (or drop, or delay) one event; True when a reorder fault holds it back."""
        name = item.event.event
        d = item.delivery
        if self._faults.take("webhook_drop", event=name):
            d.faults.append("drop")
            d.outcome = "dropped"
            log.warning("webhook_dropped_by_fault", event=name, webhook_id=d.id)
            return False
        if self._faults.take("webhook_unsigned", event=name):
            d.faults.append("unsigned")
            item.signed = False
        if self._faults.take("webhook_bad_signature", event=name):
            d.faults.append("bad_signature")
            item.bad_signature = True
        copies = 1
        dup = self._faults.take("webhook_duplicate", event=name)
        if dup:
            d.faults.append("duplicate")
            copies = max(1, int(dup.params["copies"]))
        delay = self._faults.take("webhook_delay", event=name)
        if delay:
            d.faults.append("delay")
            task = asyncio.create_task(
                self._send_later(item, float(delay.params["delay_s"]), copies)
            )
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
            return False
        hold = self._faults.take("webhook_reorder", event=name)
        if hold:
            d.faults.append("reorder")
            for _ in range(copies):
                self._held.append((item, time.monotonic() + float(hold.params["hold_s"])))
            return True
        for _ in range(copies):
            self._queue_send(item)
        return False

    def _queue_send(self, item: _Item) -> None:
        """Into its resource's queue; that resource's worker sends in order."""
        key = resource_key(item.event)
        queue = self._resources.get(key)
        if queue is None:
            queue = self._resources[key] = asyncio.Queue()
        queue.put_nowait(item)
        worker = self._resource_workers.get(key)
        if worker is None or worker.done():
            self._resource_workers[key] = asyncio.create_task(
                self._resource_worker(key, queue), name=f"livekit-emulator-webhooks-{key}"
            )

    async def _resource_worker(self, key: str, queue: asyncio.Queue[_Item]) -> None:
        try:
            while not queue.empty():
                item = queue.get_nowait()
                waited = time.monotonic() - item.queued_at
                if waited > self._max_age_s:
                    d = item.delivery
                    d.outcome, d.error = "dropped", f"waited {waited:.1f} s in its queue (age)"
                    log.warning("webhook_dropped_by_age", event=d.event, webhook_id=d.id,
                                waited_s=round(waited, 1))  # fmt: skip
                    continue
                try:
                    await self._send(item)
                except Exception:  # one bad event must not stop its resource's queue
                    item.delivery.outcome = "failed"
                    log.exception("webhook_sender_error", webhook_id=item.delivery.id)
        finally:
            if self._resources.get(key) is queue and queue.empty():
                del self._resources[key]
                self._resource_workers.pop(key, None)

    async def _send_later(self, item: _Item, delay_s: float, copies: int) -> None:
        await asyncio.sleep(delay_s)
        for _ in range(copies):
            await self._send(item)

    async def _send(self, item: _Item) -> None:
        d = item.delivery
        url = d.url
        headers = {"Content-Type": "application/webhook+json"}
        if item.signed:
            signed_body = item.body + b" " if item.bad_signature else item.body
            headers["Authorization"] = webhook_token(signed_body, self._api_key, self._api_secret)
        assert self._session is not None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff_s * (2 ** (attempt - 1)))
            d.attempts += 1
            try:
                async with self._session.post(url, data=item.body, headers=headers) as resp:
                    await resp.read()
                    d.status = resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                d.status = None
                d.error = f"{type(e).__name__}: {e}"
                log.warning("webhook_attempt_failed", event=d.event, webhook_id=d.id,
                            attempt=d.attempts, error=d.error)  # fmt: skip
                continue
            if 200 <= d.status < 300:
                d.outcome, d.error = "delivered", ""
                log.info("webhook_delivered", event=d.event, webhook_id=d.id, status=d.status,
                         attempts=d.attempts)  # fmt: skip
                return
            d.error = f"HTTP {d.status}"
            log.warning("webhook_rejected", event=d.event, webhook_id=d.id, status=d.status,
                        attempt=d.attempts)  # fmt: skip
            if d.status < 500 and d.status != 429:
                break
        d.outcome = "failed"
        log.error("webhook_failed", event=d.event, webhook_id=d.id, attempts=d.attempts,
                  error=d.error)  # fmt: skip
