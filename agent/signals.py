"""Signals to one call's workflow: ordered, at-least-once, through Temporal outages.

`SignalQueue` is what the bridge and Sarah's tools put signals into (`SignalSink.send`); it
delivers them in order, retrying with backoff while Temporal cannot be reached, and sends
transcript lines that queued up together as one `transcript_batch`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.log import get_logger
from core.models import SIGNAL_TRANSCRIPT, SIGNAL_TRANSCRIPT_BATCH, TranscriptBatch

log = get_logger(__name__)

ClientFactory = Callable[[], Awaitable[Client]]

# Signals that may make room for a line when the queue is full (the call loses a detail).
_EXPENDABLE = frozenset({"silence", "agent_metrics"})
# A signal rejected for one of these can never be delivered: retrying would block the queue.
_UNDELIVERABLE = {RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def iso_from_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def new_signal_id(kind: str) -> str:
    """Unique id for one signal; retries resend the same object, so the same id."""
    return f"{kind}-{uuid.uuid4().hex[:20]}"


class SignalSink(Protocol):
    """Where the agent's code puts a signal for its call's workflow. Never blocks, never raises."""

    def send(self, name: str, payload: Any) -> None: ...


class LoggedSignals:
    """A `SignalSink` for a session without a call (the console): logs what would be sent."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    def send(self, name: str, payload: Any) -> None:
        log.info(
            "signal_not_sent", call_id=self.call_id, signal=name, id=getattr(payload, "id", "")
        )


@dataclass
class _Pending:
    name: str
    payload: Any
    queued_at: float = 0.0  # loop time, for turn coalescing


class SignalQueue:
    """In-order, at-least-once delivery of signals to one workflow, through Temporal outages.

    `send()` only enqueues; a background task (`start()`) delivers the head of the queue and
    moves on only once Temporal accepted it. `delivered` and `dropped` count queued items. Connection failures and transient RPC errors are
    retried with capped exponential backoff; a signal the server can never accept (workflow
    gone, payload refused) is logged and skipped. Transcript lines that are queued together
    (a backlog after an outage, or lines that arrive while one is in flight) go as one
    `transcript_batch` signal: fewer history events, same order, each line keeps its id.
    At `max_pending` (hours of talk) a new signal is refused and logged.

    Signals name the workflow's current run, looked up once (`describe`): a signal by workflow
    id alone costs the server a read of the current run from its database every time (from a
    sixth to over half of the dev server's SQLite time, docs/benchmarks.md). When that run has
    ended (continued as new), the server answers NOT_FOUND; the queue then looks the run up
    again and resends, and only a workflow with no running run makes a signal undeliverable.
    """

    def __init__(
        self,
        workflow_id: str,
        connect: ClientFactory,
        *,
        call_id: str = "",
        max_pending: int = 5000,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        rpc_timeout_s: float = 10.0,
        max_batch: int = 50,
        coalesce_s: float = 0.0,
    ) -> None:
        self.workflow_id = workflow_id
        self.call_id = call_id
        self._connect = connect
        self._client: Client | None = None
        self._queue: deque[_Pending] = deque()
        self._max = max_pending
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._rpc_timeout = timedelta(seconds=rpc_timeout_s)
        self._max_batch = max_batch
        # A customer's final line waits up to this long for the assistant's reply so that the
        # turn travels as one signal (about 3.9 instead of 6.3 history events a line).
        self._coalesce_s = coalesce_s
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._run_id = ""  # the run signals go to; "" = by workflow id (the current run)
        self._run_lookups = 3  # a failed lookup is tried again, but not on every signal
        self.delivered = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"signals:{self.workflow_id}")
            self._task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("signal_sender_crashed", call_id=self.call_id, error=repr(task.exception()))

    def send(self, name: str, payload: Any) -> None:
        if len(self._queue) >= self._max and not self._make_room(name):
            self.dropped += 1
            log.error("signal_queue_full", call_id=self.call_id, signal=name, pending=self.pending)
            return
        self._queue.append(_Pending(name, payload, asyncio.get_running_loop().time()))
        self._idle.clear()
        self._wake.set()

    def _make_room(self, name: str) -> bool:
        """At overflow a line (or an alert) evicts the oldest expendable signal (a silence
        report or stand-alone metrics, never the head in flight); those never evict a line."""
        if name in _EXPENDABLE:
            return False
        for i, item in enumerate(self._queue):
            if i > 0 and item.name in _EXPENDABLE:
                del self._queue[i]
                self.dropped += 1
                log.warning("signal_evicted", call_id=self.call_id, signal=item.name)
                return True
        return False

    def undelivered(self) -> list[tuple[str, Any]]:
        """What is still queued, in order (for the spool when the job ends)."""
        return [(i.name, i.payload) for i in self._queue]

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued so far is delivered; False if `timeout` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float) -> bool:
        """Deliver what is queued (up to `timeout` seconds), then stop. True if nothing was left."""
        self.start()
        delivered_all = await self.drain(timeout)
        if not delivered_all:
            log.error(
                "signals_undelivered_at_close",
                call_id=self.call_id,
                pending=self.pending,
                first=self._queue[0].name if self._queue else None,
            )
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return delivered_all

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            hold = self._hold_for_turn()
            if hold > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), hold)
                except TimeoutError:
                    pass
                continue
            items = self._next_batch()
            if len(items) == 1:
                name, payload = items[0].name, items[0].payload
            else:
                first = items[0].payload
                name = SIGNAL_TRANSCRIPT_BATCH
                payload = TranscriptBatch(
                    id=f"batch-{first.id}-{len(items)}", lines=[i.payload for i in items]
                )
            if await self._deliver(name, payload, len(items)):
                for item in items:  # still at the front: send() only appends
                    if self._queue and self._queue[0] is item:
                        self._queue.popleft()

    def _hold_for_turn(self) -> float:
        """Seconds to keep a lone customer line back, waiting for the rest of its turn."""
        if self._coalesce_s <= 0 or len(self._queue) != 1:
            return 0.0
        head = self._queue[0]
        if head.name != SIGNAL_TRANSCRIPT or getattr(head.payload, "speaker", "") != "customer":
            return 0.0
        return head.queued_at + self._coalesce_s - asyncio.get_running_loop().time()

    def _next_batch(self) -> list[_Pending]:
        head = self._queue[0]
        if head.name != SIGNAL_TRANSCRIPT:
            return [head]
        batch = [head]
        for item in itertools.islice(self._queue, 1, self._max_batch):
            if item.name != SIGNAL_TRANSCRIPT:
                break
            batch.append(item)
        return batch

    async def _deliver(self, name: str, payload: Any, count: int) -> bool:
        """True when the `count` queued items in this signal are done with (delivered or
        undeliverable); False to retry them."""
        if self._client is None:
            try:
                self._client = await self._connect()
            except Exception as exc:  # noqa: BLE001 - any connect failure: keep the signal, retry
                await self._back_off(name, f"connect: {type(exc).__name__}: {str(exc)[:200]}")
                return False
        if not self._run_id and self._run_lookups > 0:
            await self._look_up_run()
        try:
            if self._run_id:
                handle = self._client.get_workflow_handle(self.workflow_id, run_id=self._run_id)
            else:
                handle = self._client.get_workflow_handle(self.workflow_id)
            await handle.signal(name, payload, rpc_timeout=self._rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND and self._run_id:
                # that run has ended (continued as new): find the current one and resend
                self._run_id, self._run_lookups = "", 1
                return False
            if exc.status in _UNDELIVERABLE:
                self.dropped += count
                log.error(
                    "signal_undeliverable",
                    call_id=self.call_id,
                    signal=name,
                    status=exc.status.name,
                    error=exc.message[:200],
                )
                return True
            await self._back_off(name, f"{exc.status.name}: {exc.message[:200]}")
            return False
        except (OSError, TimeoutError) as exc:
            await self._back_off(name, f"{type(exc).__name__}: {str(exc)[:200]}")
            return False
        except (TypeError, ValueError):  # the converter cannot encode it: it never will
            self.dropped += count
            log.exception("signal_unencodable", call_id=self.call_id, signal=name)
            return True
        except Exception as exc:  # noqa: BLE001 - unknown failure: keep the line and retry, never drop
            log.exception("signal_failed", call_id=self.call_id, signal=name)
            await self._back_off(name, f"{type(exc).__name__}: {str(exc)[:200]}")
            return False
        if self._failures:
            log.info(
                "temporal_reachable_again",
                call_id=self.call_id,
                after_failures=self._failures,
                pending=self.pending,
            )
        self._failures = 0
        self.delivered += count
        return True

    async def _look_up_run(self) -> None:
        """Remember the workflow's running run, if there is one (an optimisation only: on any
        failure signals go by workflow id, as they always may)."""
        self._run_lookups -= 1
        assert self._client is not None
        try:
            desc = await self._client.get_workflow_handle(self.workflow_id).describe(
                rpc_timeout=self._rpc_timeout
            )
        except Exception as exc:  # noqa: BLE001 - any failure: signal by id, which also works
            log.info("workflow_run_not_looked_up", call_id=self.call_id, error=repr(exc)[:200])
            return
        if desc.status == WorkflowExecutionStatus.RUNNING:
            self._run_id = desc.run_id

    async def _back_off(self, name: str, error: str) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning(
                "temporal_unreachable",
                call_id=self.call_id,
                signal=name,
                failures=self._failures,
                pending=self.pending,
                error=error,
            )
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (self._failures - 1))
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
