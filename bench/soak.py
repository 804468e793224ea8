"""Soak: calls at a steady rate on devstack, every one recorded; each recording must be stored
within a minute of its call ending, and no call may wait for a timeout.

    uv run python -m bench.soak [--rate 1 --calls 100 | --duration 300] [--lines 6 --gap 1.0]

Starts the whole product (bench/stack.py: Temporal dev server, PostgreSQL, S3, LiveKit emulator,
`--workers` worker processes, the API) with recording on (`RECORDING_CONSENT=announce`: the
greeting's disclosure starts egress). Then starts one call every 1/`--rate` s through
`POST /api/calls`, on schedule whatever the earlier calls are doing. Each call: the customer
joins (emulator -> signed webhook), the emulator's agent joins, a simulated agent on the agent's
own `SignalQueue` (bench.calls.simulated_agent) greets and alternates `--lines` final lines
about `--gap` s apart, then the customer hangs up (emulator -> webhook). The emulator records
the egress and uploads its file to the staging bucket as Egress does; the worker's pipeline
copies it into the recordings bucket.

Measured per call, from the hang-up (the moment the soak tells the emulator the customer left):
the call seen `completed`, and its recording seen `stored` (PostgreSQL's `calls` row, polled
every 0.25 s for every call at once: what `GET /api/calls/{id}` serves for an ended call).
Then, through the public API, PostgreSQL and S3:

- every call is `completed`, ended `customer_left`, recording `stored` within `--deadline` s
  (default 60) of the call's end (`ended_at`);
- no call took a timeout path: its event log (`call_events`) has no `recording` event
  `egress_polled` / `egress_poll_failed` / `egress_lost` (the egress-end timeout ran out and the
  workflow asked LiveKit), `stop_failed`, no agent redispatch (`agent_dispatch` for
  `no_agent_joined`/`agent_lost`), no rejoin grace running out (`customer_connection` `gone`);
  none is still `stopping`/`uploading` when the soak gives up waiting (`--wait`);
- no call fell behind: no silence alert (nothing heard for `SILENCE_ALERT_S`: a line or the
  hang-up came late), no recording marked incomplete (much shorter than the call);
- each call has exactly one recording (`GET /api/calls/{id}/recording`: one segment, not
  `incomplete`) and one object under `conversations/<call_id>` in the recordings bucket, no
  copy left in the staging bucket, and the SHA-256 of the row, of the bytes behind the API's
  presigned link and of the file the emulator produced all agree;
- every final line is in PostgreSQL exactly once (bench.calls.check_calls).

Prints p50/p95/max of hang-up -> completed, hang-up -> stored and call end -> stored, the
counts, how loaded the machine was and each part's CPU, and the delays per minute of starts (a
product that keeps up gives flat rows). Exit status 1 when any check fails (problems counted by
kind, offending calls listed), 0 otherwise. `--drop-webhook EVENT:N` is the soak's
self-check: the emulator drops N webhooks of EVENT (as LiveKit drops those that wait too
long), so the calls that then wait must be reported.

Only the public API, PostgreSQL and S3 are read, never workflow internals, so the soak does not
depend on which workflow writes a call's recording outcome.

The customer's rejoin grace (`CUSTOMER_REJOIN_GRACE_S`, 30 s by default) is a deliberate wait
for a dropped customer, not the recording pipeline's: the soak sets it to `--rejoin-grace`
(default 0) so a hang-up ends the call at once; with a grace, `gone` events are expected and the
deadline still counts from the call's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import psutil
from minio import Minio
from temporalio.client import Client

from bench.calls import ProcessMeter, Progress, agent_bridge, check_calls, simulated_agent
from bench.stack import Stack, percentile, running_stack
from core import models as m
from core.temporal import connect_temporal, exit_process

POLL_S = 0.25
ENDED = {m.CallStatus.COMPLETED.value, m.CallStatus.NO_AGENT.value, m.CallStatus.FAILED.value}
# Recording statuses after which nothing more happens to a call's recording.
SETTLED = {m.RecordingStatus.STORED.value, m.RecordingStatus.FAILED.value}
# Event (kind, status) pairs that say a timer ran out and the call waited for it.
TIMEOUT_PATHS = {
    ("recording", "egress_polled"): "egress-end timeout ran out, asked LiveKit",
    ("recording", "egress_poll_failed"): "egress-end timeout ran out, asking LiveKit failed",
    ("recording", "egress_lost"): "egress-end timeout ran out, LiveKit no longer knew the egress",
    ("recording", "stop_failed"): "stopping the egress failed",
    ("agent_dispatch", "agent_lost"): "agent lost mid-call",
    ("customer_connection", "gone"): "customer rejoin grace ran out",
}


@dataclass
class Call:
    """One call of the soak and what was seen of it (times are epoch seconds)."""

    n: int
    due_s: float = 0.0  # when it was started, from the first call's start
    call_id: str = ""
    setup_ms: float = 0.0
    lines: list[str] = field(default_factory=list)
    hung_up_at: float | None = None
    completed_at: float | None = None  # first poll that saw an ended status
    stored_at: float | None = None  # first poll that saw a settled recording (stored or not)
    ended_at: float | None = None  # the call's own end (`ended_at`)
    status: str = ""
    recording_status: str = ""
    problems: list[str] = field(default_factory=list)

    def delay(self, until: float | None, since: float | None) -> float | None:
        return None if until is None or since is None else until - since


class SoakProgress(Progress):
    """One line on stderr: calls started, hung up, completed and stored, of those planned."""

    def __init__(self, calls: list[Call], total: int) -> None:
        super().__init__("soak", total)
        self.calls = calls

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        stored = sum(1 for c in self.calls if c.recording_status == m.RecordingStatus.STORED)
        completed = sum(1 for c in self.calls if c.status in ENDED)
        width = 30
        filled = int(width * stored / max(1, self.total))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{len(self.calls)}/{self.total} started, {self.calls_done} hung up, "
                         f"{completed} completed, {stored} stored ")  # fmt: skip
        sys.stderr.flush()


def process_meter(stack: Stack) -> ProcessMeter:
    """CPU of each part of the stack, to tell the product's share from the machine's load."""
    parts = {"worker": "worker.py", "api": "-m api", "temporal": "start-dev",
             "postgres": "postgres", "s3": "moto.server", "emulator": "devstack.livekit"}  # fmt: skip
    groups: dict[str, Callable[[], list[psutil.Process]]] = {
        name: functools.partial(stack.processes, needle) for name, needle in parts.items()
    }
    groups["soak"] = lambda: [psutil.Process()]
    return ProcessMeter(groups)


class LoadMeter:
    """The machine's load while the soak runs (load average, CPU busy %) and each part's CPU."""

    def __init__(self, stack: Stack) -> None:
        self.load_start = self.load_max = self.load_end = os.getloadavg()[0]
        self.cpu_busy = 0.0
        self.parts = process_meter(stack)
        self.part_cpu: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.load_max = max(self.load_max, os.getloadavg()[0])
            await asyncio.sleep(5)

    def start(self) -> None:
        psutil.cpu_percent()  # starts psutil's interval
        self.parts.start()
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        self.cpu_busy = psutil.cpu_percent()
        self.part_cpu = await self.parts.stop()
        self.load_end = os.getloadavg()[0]
        self.load_max = max(self.load_max, self.load_end)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def emulator_control(stack: Stack) -> str:
    """The LiveKit emulator's control API (customers join and leave there, as a widget would)."""
    return stack.settings.LIVEKIT_URL.replace("ws", "http", 1).rstrip("/") + "/_emulator"


async def drive_call(
    call: Call,
    stack: Stack,
    http: aiohttp.ClientSession,
    client: Client,
    lines: int,
    gap: float,
    rnd: random.Random,
    progress: SoakProgress,
) -> None:
    """One call through the product: set up, customer in, a short conversation, hang-up."""
    control = emulator_control(stack)
    t0 = time.perf_counter()
    async with http.post(f"{stack.api_url}/api/calls", json={"customer_name": "Soak"}) as r:
        body = await r.json()
        if r.status != 201:
            call.problems.append(f"POST /api/calls answered {r.status}: {body}")
            return
    call.setup_ms = (time.perf_counter() - t0) * 1000
    call.call_id = body["call_id"]
    room, ident = m.room_name_for(call.call_id), m.customer_identity(call.call_id)
    async with http.post(f"{control}/rooms/{room}/participants",
                         json={"identity": ident, "kind": "customer",
                               "publish_audio": True}) as r:  # fmt: skip
        if r.status >= 300:
            call.problems.append(f"customer could not join: {r.status} {await r.text()}")
            return

    async def shared() -> Client:
        return client

    async def hang_up() -> None:
        call.hung_up_at = time.time()
        async with http.delete(f"{control}/rooms/{room}/participants/{ident}") as r:
            if r.status >= 300:
                call.problems.append(f"hang-up refused: {r.status} {await r.text()}")

    bridge = agent_bridge(stack.settings, stack.api_url, call.call_id, shared,
                          stack.directory / "agent-spool")  # fmt: skip
    try:
        # The assistant speaks first: its greeting carries the recording disclosure.
        call.lines = await simulated_agent(
            bridge, call.call_id, lines, {}, rnd, progress, hang_up,
            gap=lambda r: r.uniform(0.5 * gap, 1.5 * gap), first_speaker="assistant",
        )  # fmt: skip
    finally:
        await bridge.aclose(5)


async def watch(dsn: str, calls: list[Call], progress: SoakProgress, stop: asyncio.Event) -> None:
    """Polls the `calls` rows of every unsettled call; notes when each ended and settled."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            open_ids = [c.call_id for c in calls if c.call_id and not _settled(c)]
            if open_ids:
                rows = await conn.fetch(
                    "SELECT call_id, status, recording_status, "
                    "extract(epoch FROM ended_at)::float8 AS ended_at FROM calls "
                    "WHERE call_id = ANY($1::text[])",
                    open_ids,
                )
                now = time.time()
                by_id = {r["call_id"]: r for r in rows}
                for c in calls:
                    row = by_id.get(c.call_id)
                    if row is None:
                        continue
                    c.status, c.recording_status = row["status"], row["recording_status"]
                    c.ended_at = row["ended_at"]
                    if c.completed_at is None and c.status in ENDED:
                        c.completed_at = now
                    if c.stored_at is None and c.status in ENDED and _recording_done(c):
                        c.stored_at = now
            progress.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
    finally:
        await conn.close()


def _recording_done(c: Call) -> bool:
    # A call that ended without ever recording keeps `none`: nothing more will come.
    return c.recording_status in SETTLED or c.recording_status == m.RecordingStatus.NONE


def _settled(c: Call) -> bool:
    return c.status in ENDED and _recording_done(c)


async def check_timeouts(conn: asyncpg.Connection, calls: list[Call], grace_s: float) -> None:
    """Adds a problem to each call whose event log shows a timer that ran out."""
    rows = await conn.fetch(
        "SELECT call_id, kind, data->>'status' AS status, data->>'reason' AS reason "
        "FROM call_events WHERE call_id = ANY($1::text[]) "
        "AND kind IN ('recording', 'agent_dispatch', 'customer_connection', 'silence_alert') "
        "ORDER BY call_id, seq",
        [c.call_id for c in calls if c.call_id],
    )
    by_id = {c.call_id: c for c in calls}
    for r in rows:
        c = by_id[r["call_id"]]
        what = TIMEOUT_PATHS.get((r["kind"], r["status"]))
        if r["kind"] == "customer_connection" and r["status"] == "gone" and grace_s > 0:
            what = None  # with a rejoin grace, a hang-up ends the call this way by design
        if r["kind"] == "agent_dispatch" and r["reason"] in ("no_agent_joined", "agent_lost"):
            what = f"agent dispatched again ({r['reason']})"
        if r["kind"] == "silence_alert":
            c.problems.append("late: silence alert (the call heard nothing for SILENCE_ALERT_S)")
        if what:
            c.problems.append(f"timeout path: {what}")


async def check_recordings(
    stack: Stack, http: aiohttp.ClientSession, conn: asyncpg.Connection, calls: list[Call]
) -> int:
    """Each call's recording through the public API, its row and S3; the number verified."""
    s = stack.settings
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    control = emulator_control(stack)
    s3 = Minio(s.MINIO_ENDPOINT, access_key=s.MINIO_ACCESS_KEY.get_secret_value(),
               secret_key=s.MINIO_SECRET_KEY.get_secret_value(), secure=s.MINIO_SECURE)  # fmt: skip
    rows = {
        r["call_id"]: r
        for r in await conn.fetch(
            "SELECT call_id, object_key, egress_id, sha256 FROM recordings "
            "WHERE call_id = ANY($1::text[])",
            [c.call_id for c in calls if c.call_id],
        )
    }
    verified = 0
    for c in calls:
        if not c.call_id:
            continue
        async with http.get(f"{stack.api_url}/api/calls/{c.call_id}", headers=auth) as r:
            if r.status != 200:
                c.problems.append(f"GET /api/calls/{{id}} answered {r.status}: {await r.text()}")
                continue
            api_call = await r.json()
        c.status, c.recording_status = api_call.get("status", ""), api_call["recording_status"]
        if c.status != m.CallStatus.COMPLETED:
            c.problems.append(f"call is {c.status}, not completed")
        if api_call.get("end_reason") != "customer_left":
            c.problems.append(f"ended {api_call.get('end_reason')!r}, not 'customer_left'")
        if c.recording_status != m.RecordingStatus.STORED:
            c.problems.append(f"recording is {c.recording_status}, not stored")
            continue
        async with http.get(f"{stack.api_url}/api/calls/{c.call_id}/recording", headers=auth) as r:
            if r.status != 200:
                c.problems.append(f"GET recording answered {r.status}: {await r.text()}")
                continue
            link = await r.json()
        segments, row = link["segments"], rows.get(c.call_id)
        if len(segments) != 1 or row is None:
            c.problems.append(f"{len(segments)} recording segments, row: {row is not None}")
            continue
        if segments[0]["incomplete"]:
            c.problems.append("late: recording much shorter than the call (incomplete)")
        async with http.get(segments[0]["url"]) as r:
            via_link = hashlib.sha256(await r.read()).hexdigest() if r.status == 200 else ""
        async with http.get(f"{control}/recordings/{row['egress_id']}.ogg") as r:
            produced = hashlib.sha256(await r.read()).hexdigest() if r.status == 200 else ""
        stored = await asyncio.to_thread(_objects, s3, s.RECORDINGS_BUCKET, c.call_id)
        staged = await asyncio.to_thread(_objects, s3, s.EGRESS_BUCKET, c.call_id)
        if stored != [row["object_key"]]:
            c.problems.append(f"recordings bucket holds {stored}, expected [{row['object_key']}]")
        if [k for k in staged if k.endswith(".ogg")]:
            c.problems.append(f"staging copy left behind: {staged}")
        shas = {row["sha256"], segments[0]["sha256"], via_link, produced}
        if len(shas) != 1:
            c.problems.append(
                f"SHA-256 differ: row {row['sha256']}, API {segments[0]['sha256']}, "
                f"object {via_link or 'unreadable'}, produced {produced or 'unreadable'}"
            )
            continue
        verified += 1
    return verified


def _objects(s3: Minio, bucket: str, call_id: str) -> list[str]:
    found = s3.list_objects(bucket, prefix=f"conversations/{call_id}", recursive=True)
    return sorted(str(o.object_name) for o in found)


def _figures(values: list[float | None]) -> tuple[str, list[float]]:
    got = [v for v in values if v is not None]
    if not got:
        return "no samples", got
    return (f"p50 {percentile(got, 50):6.1f} s   p95 {percentile(got, 95):6.1f} s   "
            f"max {max(got):6.1f} s   (n={len(got)})"), got  # fmt: skip


def windows(calls: list[Call], span_s: float = 60.0) -> None:
    """The delays per minute of starts: does the product keep up, or fall further behind?"""
    by_window: dict[int, list[Call]] = {}
    for c in calls:
        by_window.setdefault(int(c.due_s // span_s), []).append(c)
    if len(by_window) < 2:
        return
    heads = ("hang-up -> end", "hang-up -> completed", "call end -> stored")
    print(f"{'started in':14}{'calls':>6}" + "".join(f"{h:>26}" for h in heads))
    for w, group in sorted(by_window.items()):
        cells = []
        for until, since in (("ended_at", "hung_up_at"), ("completed_at", "hung_up_at"),
                             ("stored_at", "ended_at")):  # fmt: skip
            got = [
                d for c in group
                if (d := c.delay(getattr(c, until), getattr(c, since))) is not None
            ]  # fmt: skip
            cells.append(f"p50 {percentile(got, 50):5.1f}  max {max(got):5.1f} s" if got else "-")
        label = f"{w * span_s:.0f}-{(w + 1) * span_s:.0f} s"
        print(f"{label:14}{len(group):6}" + "".join(f"{c:>26}" for c in cells))


def report(calls: list[Call], args: argparse.Namespace, took_s: float, load: LoadMeter,
           verified: int, lines: tuple[int, int]) -> bool:  # fmt: skip
    """Prints the figures and every problem; True when the soak passed."""
    started = [c for c in calls if c.call_id]
    print(f"soak: {len(started)} calls started of {len(calls)} planned at {args.rate:g}/s "
          f"({args.lines} lines, ~{args.gap:g} s apart, {args.workers} worker(s)); "
          f"{took_s:.0f} s in all")  # fmt: skip
    setup = [c.setup_ms for c in started]
    if setup:
        print(f"{'POST /api/calls':28} p50 {percentile(setup, 50):6.0f} ms  "
              f"p95 {percentile(setup, 95):6.0f} ms  max {max(setup):6.0f} ms")  # fmt: skip
    text, _ = _figures([c.delay(c.completed_at, c.hung_up_at) for c in started])
    print(f"{'hang-up -> completed':28} {text}")
    # The call's own end: when the workflow handled the hang-up (webhook, API, signal).
    text, _ = _figures([c.delay(c.ended_at, c.hung_up_at) for c in started])
    print(f"{'  of which hang-up -> end':28} {text}")
    text, _ = _figures([c.delay(c.stored_at, c.hung_up_at) for c in started])
    print(f"{'hang-up -> recording stored':28} {text}")
    text, _ = _figures([c.delay(c.stored_at, c.ended_at) for c in started])
    print(f"{'call end -> recording stored':28} {text}   (deadline {args.deadline:g} s)")
    for c in started:
        late = c.delay(c.stored_at, c.ended_at)
        if c.stored_at is None:
            c.problems.append(f"recording not settled ({c.recording_status or 'no row'}) "
                              f"{args.wait:g} s after the last hang-up")  # fmt: skip
        elif late is not None and late > args.deadline:
            c.problems.append(f"recording stored {late:.1f} s after the call ended")
    completed = sum(1 for c in started if c.status == m.CallStatus.COMPLETED)
    stored = sum(1 for c in started if c.recording_status == m.RecordingStatus.STORED)
    timeouts = sum(1 for c in calls if any(p.startswith("timeout path") for p in c.problems))
    late = sum(1 for c in calls if any(p.startswith("late:") for p in c.problems))
    missing, doubled = lines
    print(f"calls: {completed} completed, {stored} recordings stored, {verified} verified "
          f"(one object, SHA-256 of row = API link = LiveKit's file), {timeouts} took a "
          f"timeout path, {late} fell behind (silence alert or short recording); final lines missing {missing}, doubled {doubled}")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs; load average (1 min) {load.load_start:.2f} at start, "
          f"max {load.load_max:.2f}, {load.load_end:.2f} at end; CPU busy {load.cpu_busy:.0f} % "
          f"over the run")  # fmt: skip
    parts = ", ".join(f"{k} {v:.0f} %" for k, v in load.part_cpu.items())
    print(f"CPU over the run (% of one core): {parts}")
    windows(started)
    bad = [c for c in calls if c.problems]
    kinds = Counter(re.sub(r"\d+(\.\d+)?", "N", p) for c in bad for p in c.problems)
    for kind, count in kinds.most_common():
        print(f"  {count:4} x {kind}")
    for c in bad[: args.show]:
        print(f"  call {c.n} {c.call_id or '(not started)'}: {'; '.join(c.problems)}")
    if len(bad) > args.show:
        print(f"  ... and {len(bad) - args.show} more calls (--show)")
    ok = not bad and not missing and not doubled and len(started) == len(calls)
    print("result: PASS" if ok else f"result: FAIL ({len(bad)} calls with problems)")
    return ok


async def drop_webhooks(stack: Stack, drops: list[tuple[str, int]]) -> None:
    """The emulator drops the next N webhooks of each event named (LiveKit drops webhooks that
    wait too long): the soak's own check that it catches the calls that then wait."""
    control = emulator_control(stack)
    async with aiohttp.ClientSession() as http:
        for event, count in drops:
            fault = {"kind": "webhook_drop", "event": event, "count": count}
            async with http.post(f"{control}/faults", json=fault) as r:
                assert r.status == 201, await r.text()


def stack_settings(args: argparse.Namespace) -> dict[str, str]:
    """The stack's settings: admission limits lifted (one address starts every call)."""
    env = {
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "MAX_WAITING_CALLS": "1000000",
        "MAX_CALLS_PER_CLIENT": "1000000",
        "MAX_LIVE_AI_CALLS": "1000000",
        "RECORDING_CONSENT": "announce",
        # The emulator keeps each file it produced, so its SHA-256 can be checked (debug flag).
        "LIVEKIT_EMULATOR_SERVE_RECORDINGS": "1",
        "CUSTOMER_REJOIN_GRACE_S": str(args.rejoin_grace),
    }
    if args.egress_end_timeout is not None:
        env["EGRESS_END_TIMEOUT_S"] = str(args.egress_end_timeout)
    return env


async def main(args: argparse.Namespace) -> bool:
    n = args.calls if args.calls is not None else max(1, math.ceil(args.duration * args.rate))
    rnd = random.Random(args.seed)
    calls: list[Call] = []
    progress = SoakProgress(calls, n)
    async with running_stack(workers=args.workers, **stack_settings(args)) as stack:
        dsn = stack.settings.DATABASE_URL.get_secret_value()
        client = await connect_temporal(stack.settings)
        if args.drop_webhook:
            await drop_webhooks(stack, args.drop_webhook)
        load = LoadMeter(stack)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(dsn, calls, progress, stop))
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            load.start()
            t0 = time.monotonic()
            drivers = []
            for k in range(n):  # on schedule, whatever the earlier calls are doing
                await asyncio.sleep(max(0.0, t0 + k / args.rate - time.monotonic()))
                call = Call(k, due_s=k / args.rate)
                calls.append(call)
                drivers.append(asyncio.create_task(drive_call(
                    call, stack, http, client, args.lines, args.gap,
                    random.Random(rnd.random()), progress)))  # fmt: skip
            results = await asyncio.gather(*drivers, return_exceptions=True)
            for call, res in zip(calls, results, strict=True):
                if isinstance(res, BaseException):
                    call.problems.append(f"driving the call failed: {res!r}")
            deadline = time.monotonic() + args.wait
            while (
                time.monotonic() < deadline
                and not watcher.done()
                and not all(_settled(c) for c in calls if c.call_id)
            ):
                await asyncio.sleep(POLL_S)
            stop.set()
            await watcher
            took = time.monotonic() - t0
            await load.stop()
            progress.tick(force=True)
            sys.stderr.write("\n")
            expected = {c.call_id: c.lines for c in calls if c.call_id}
            missing, doubled, _ = await check_calls(dsn, expected, timeout_s=0)
            conn = await asyncpg.connect(dsn)
            try:
                await check_timeouts(conn, calls, args.rejoin_grace)
                verified = await check_recordings(stack, http, conn, calls)
            finally:
                await conn.close()
    return report(calls, args, took, load, verified, (missing, doubled))


def _drop(value: str) -> tuple[str, int]:
    event, _, count = value.partition(":")
    if not event or not (count or "1").isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not EVENT or EVENT:N")
    return event, int(count or 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status 1 when any call failed a check (each one is listed).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--calls", type=int, help="calls to start (default 100)")
    size.add_argument("--duration", type=float, help="seconds to keep starting calls")
    parser.add_argument("--rate", type=float, default=1.0, help="calls started per second (1)")
    parser.add_argument("--lines", type=int, default=6, help="final lines per call (6)")
    parser.add_argument("--gap", type=float, default=1.0,
                        help="mean seconds between lines (1.0; each 0.5-1.5x)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds from a call's end to its stored recording (60)")  # fmt: skip
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds after the last hang-up to wait for stragglers (120)")  # fmt: skip
    parser.add_argument("--rejoin-grace", type=float, default=0.0,
                        help="CUSTOMER_REJOIN_GRACE_S for the stack (0: a hang-up ends the call)")  # fmt: skip
    parser.add_argument("--egress-end-timeout", type=float, default=None,
                        help="EGRESS_END_TIMEOUT_S for the stack (product default: 600)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--show", type=int, default=20, help="calls with problems to list (20)")
    parser.add_argument("--drop-webhook", type=_drop, action="append", default=[],
                        metavar="EVENT:N",
                        help="self-check: the emulator drops the next N webhooks of EVENT "
                             "(e.g. egress_ended:1), so those calls wait and the soak fails")  # fmt: skip
    args = parser.parse_args(argv)
    if args.calls is None and args.duration is None:
        args.calls = 100
    if args.rate <= 0 or (args.calls is not None and args.calls < 1):
        parser.error("--rate and --calls must be positive")
    return args


if __name__ == "__main__":
    exit_process(0 if asyncio.run(main(parse_args())) else 1)
