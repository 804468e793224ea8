"""Chaos: break one part (or the webhooks) while calls talk; then every call completes, every
recording is stored once with the right SHA-256, and no final line is missing or doubled in
PostgreSQL (`ChaosStack.check`). `--chaos-size N` calls per test (default 4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import asyncpg

from core import models as m
from core.settings import ROOT
from tests.chaos.conftest import ChaosStack, Outcome, say


async def test_worker_sigkilled_at_random_moments(chaos_stack: ChaosStack, chaos_size: int) -> None:
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        await asyncio.sleep(4.0)  # the greetings are out: recording has started
        for _ in range(3):
            await asyncio.sleep(st.rnd.uniform(1.0, 3.0))
            victim = st.rnd.choice(st.workers())
            if victim.proc is not None and victim.running:
                say(f"SIGKILL {victim.name} (pid {victim.proc.pid}) with {len(ids)} calls live")
                victim.proc.send_signal(signal.SIGKILL)

    outcome = await st.run_calls(chaos_size, during=chaos)
    await st.check(outcome)


async def test_postgres_restarted_mid_call(chaos_stack: ChaosStack, chaos_size: int) -> None:
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        await asyncio.sleep(5.0)
        await st.restart_infra("postgres", down_s=3.0)

    outcome = await st.run_calls(chaos_size, during=chaos)
    await st.check(outcome)


async def test_temporal_restarted_mid_call(chaos_stack: ChaosStack, chaos_size: int) -> None:
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        await asyncio.sleep(5.0)
        await st.restart_infra("temporal", down_s=3.0)

    outcome = await st.run_calls(chaos_size, during=chaos)
    await st.check(outcome, timeout_s=240)


async def test_s3_down_during_uploads(chaos_stack: ChaosStack, chaos_size: int) -> None:
    st = chaos_stack
    s3 = st.infra["s3"]

    async def chaos(ids: list[str]) -> None:
        # Frozen rather than killed: moto keeps its objects in memory, and a hung endpoint is
        # the harder failure (time-outs, not refusals).
        await asyncio.sleep(1.5)
        assert s3.proc is not None
        s3.proc.send_signal(signal.SIGSTOP)
        say("S3 frozen (SIGSTOP) while the calls hang up and their uploads start")

    outcome = await st.run_calls(chaos_size, lines=4, during=chaos)
    await asyncio.sleep(8)
    assert s3.proc is not None
    s3.proc.send_signal(signal.SIGCONT)
    say("S3 back (SIGCONT) after the calls ended")
    await st.check(outcome, timeout_s=240)


async def test_webhooks_duplicated_reordered_dropped_and_forged(
    chaos_stack: ChaosStack, chaos_size: int
) -> None:
    st = chaos_stack
    faults = [
        {"kind": "webhook_duplicate", "copies": 3, "count": 0},
        {"kind": "webhook_reorder", "hold_s": 1, "count": 0, "event": "participant_joined"},
        {"kind": "webhook_delay", "delay_s": 1.5, "count": 0, "event": "egress_started"},
        {"kind": "webhook_drop", "count": 0, "event": "egress_ended"},
        {"kind": "webhook_drop", "count": 0, "event": "track_published"},
    ]
    for f in faults:
        async with st.http.post(f"{st.control}/faults", json=f) as r:
            assert r.status == 201, await r.text()
    say(f"webhook faults on: {[(f['kind'], f.get('event', 'all')) for f in faults]}")

    forged_refused = 0

    async def chaos(ids: list[str]) -> None:
        nonlocal forged_refused
        await asyncio.sleep(0.5)
        for cid in ids:  # forged: a customer "leaving" each call, unsigned and badly signed
            body = ('{"event":"participant_left","id":"EV_forged_' + cid + '","room":{"name":"'
                    + f"call-{cid}" + '"},"participant":{"identity":"customer-' + cid + '"}}')  # fmt: skip
            for auth in ({}, {"Authorization": "Bearer not.a.jwt"}):
                async with st.http.post(f"{st.api_url}/webhooks/livekit", data=body,
                                        headers={"Content-Type": "application/webhook+json",
                                                 **auth}) as r:  # fmt: skip
                    assert r.status == 401, await r.text()
                    forged_refused += 1

    try:
        outcome = await st.run_calls(chaos_size, during=chaos)
        say(f"{forged_refused} forged webhooks refused with 401")
        await st.check(outcome, timeout_s=240)
    finally:
        async with st.http.delete(f"{st.control}/faults") as r:
            assert r.status < 300


async def test_agent_process_killed_mid_call(chaos_stack: ChaosStack, chaos_size: int) -> None:
    """The agent's process dies mid-call (SIGKILL) while PostgreSQL is down (the API answers
    503), so lines it had are only in its write-ahead spool; a new agent process claims the spool, sends those
    lines, and takes the calls over from the next line, as a re-dispatched agent does. Every
    line the killed process produced is stored in PostgreSQL exactly once, none is invented,
    and the calls complete."""
    st = chaos_stack
    ids = [await st.post_call() for _ in range(chaos_size)]
    for cid in ids:
        await st.customer_joins(cid)
    env = {**os.environ, **st.env, "PYTHONPATH": str(ROOT)}

    async def agent(first: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.chaos.agent_process", "--spool", str(st.spool_dir),
            "--from", str(first), "--lines", "10", *ids, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

    said: dict[str, dict[int, str]] = {c: {} for c in ids}
    stored: dict[str, set[str]] = {c: set() for c in ids}

    async def read(proc: asyncio.subprocess.Process, until_lines: int | None) -> None:
        assert proc.stdout is not None
        count = 0
        async for raw in proc.stdout:
            word, *rest = raw.decode().split()
            if word == "said":
                cid, k, line_id = rest
                said[cid][int(k)] = line_id
            elif word == "stored":
                stored[rest[0]].add(rest[2])
                count += 1
                if until_lines is not None and count >= until_lines:
                    return

    first = await agent(0)
    await read(first, until_lines=2 * chaos_size)  # a couple of lines per call are stored
    postgres = st.infra["postgres"]
    assert postgres.proc is not None
    # PostgreSQL goes down (a fast shutdown): the API answers 503, new lines stay in the spool
    os.killpg(postgres.proc.pid, signal.SIGINT)
    await postgres.stop(timeout=10)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(first, None), st.rnd.uniform(1.5, 2.5))
        assert first.returncode is None, "the agent process ended before it could be killed"
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
        await postgres.start()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(read(first, None), 1)
    # What the dead process produced: every line it printed, and every line in its spool (one
    # may be on disk without its print: it was killed in between).
    left = {c: set(ids_) for c, ids_ in spooled_lines(st.spool_dir).items()}
    assert sum(map(len, left.values())) > 0, "the kill left no line in the spool to recover"
    resume = max(max(s, default=-1) for s in said.values()) + 1
    say(f"SIGKILLed the agent process mid-call with PostgreSQL down: "
        f"{sum(map(len, stored.values()))} lines stored, {sum(map(len, left.values()))} only in "
        f"its spool; a new agent process claims them and continues from line {resume}")  # fmt: skip
    second = await agent(resume)
    await read(second, None)
    assert await second.wait() == 0
    for cid in ids:
        await st.hang_up(cid)
    assert spooled_lines(st.spool_dir) == {}, "the spool was not emptied"
    produced = {c: sorted(set(said[c].values()) | left.get(c, set())) for c in ids}
    await st.check(Outcome(produced))


def spooled_lines(directory: Path) -> dict[str, list[str]]:
    """Line ids in the agent spool files, by call (a torn last record is no line)."""
    out: dict[str, list[str]] = {}
    for path in directory.glob("lines-*.jsonl"):
        for record in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                data = json.loads(record)
                out.setdefault(data["call_id"], []).append(data["line"]["id"])
    return out


# --- LiveKit's faults, at the emulator's protocol boundary --------------------------------
OUTAGE_S = 60.0  # "for a whole minute": longer than every call's hang-up and its retries


async def test_livekit_api_unreachable_for_a_minute_across_hang_ups(
    chaos_stack: ChaosStack, chaos_size: int
) -> None:
    """Every Twirp call (StopEgress, DeleteRoom, ListEgress, ListRooms, ...) gets no answer (the
    connection dropped: LiveKit unreachable) for a minute, and every call hangs up inside it."""
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        await recording(st, ids)  # (an egress LiveKit never started records nothing)
        await st.fault({"kind": "twirp_unavailable", "count": 0, "mode": "drop"})
        say(f"LiveKit's server API unreachable (connections dropped) for {OUTAGE_S:.0f} s")
        await asyncio.sleep(OUTAGE_S)
        await st.clear_faults()
        say("LiveKit's server API is back")

    try:
        outcome = await st.run_calls(chaos_size, lines=14, during=chaos)
    finally:
        await st.clear_faults()
    await st.check(outcome, timeout_s=180)
    ids = list(outcome.lines)
    stops = await logged(st, ids, "recording", "status")
    deletes = await logged(st, ids, "status", "room_delete_failed")
    hit = [c for c in ids if "stop_failed" in stops[c] or deletes[c]]
    say(f"{len(hit)} of {len(ids)} calls hung up into the outage (StopEgress or DeleteRoom failed)")
    assert hit, "no hang-up met the outage: the test proved nothing"


async def recording(st: ChaosStack, ids: list[str]) -> None:
    """Until every call's recording has started (its first egress is running)."""
    conn = await asyncpg.connect(st.settings.DATABASE_URL.get_secret_value())
    try:
        for _ in range(120):
            n = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE call_id = ANY($1::text[]) "
                "AND recording_status = 'recording'",
                ids,
            )
            if n == len(ids):
                return
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    raise AssertionError("the calls' recordings never all started")


async def test_egress_dies_mid_recording_leaving_a_partial_file(
    chaos_stack: ChaosStack, chaos_size: int
) -> None:
    """Each call's first egress dies 3 s after it became active (EGRESS_FAILED) with what it
    had recorded uploaded: the call starts a second one, and both segments are stored."""
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        for cid in ids:
            await st.fault({"kind": "egress_end", "status": "EGRESS_FAILED", "after_s": 3,
                            "partial_file": True, "error": "pipeline frozen", "count": 1,
                            "room": m.room_name_for(cid)})  # fmt: skip
        say("each call's first egress will die 3 s into the recording, leaving a partial file")

    try:
        outcome = await st.run_calls(chaos_size, lines=20, during=chaos)
    finally:
        await st.clear_faults()
    segments = await st.check(outcome, timeout_s=240)
    assert all(ns[:2] == [1, 2] for ns in segments.values()), segments
    say(f"segments stored: {segments}")


async def test_webhooks_lost_for_a_minute_across_hang_ups(
    chaos_stack: ChaosStack, chaos_size: int
) -> None:
    """Every webhook (participant_left, room_finished, egress_ended, ...) is dropped for a
    minute, and every call hangs up inside it: each call finds out by asking LiveKit
    (ROOM_CHECK_AFTER_S for the room, EGRESS_END_TIMEOUT_S for the egress)."""
    st = chaos_stack

    async def chaos(ids: list[str]) -> None:
        await asyncio.sleep(4.0)
        await st.fault({"kind": "webhook_drop", "count": 0})
        say(f"every webhook dropped for {OUTAGE_S:.0f} s")
        await asyncio.sleep(OUTAGE_S)
        await st.clear_faults()
        say("webhooks delivered again")

    try:
        outcome = await st.run_calls(chaos_size, during=chaos)
    finally:
        await st.clear_faults()
    await st.check(outcome, timeout_s=240)
    found = await logged(st, list(outcome.lines), "status", "room_reconciled")
    say(f"found by asking LiveKit: {found}")
    assert all("customer_absent" in f for f in found.values()), found


async def logged(st: ChaosStack, ids: list[str], kind: str, key: str) -> dict[str, list[str]]:
    """Each call's `data[key]` of its `kind` events that have it, in order."""
    conn = await asyncpg.connect(st.settings.DATABASE_URL.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT call_id, data->>$3 AS value FROM call_events "
            "WHERE call_id = ANY($1::text[]) AND kind = $2 AND data ? $3 ORDER BY seq",
            ids,
            kind,
            key,
        )
    finally:
        await conn.close()
    out: dict[str, list[str]] = {c: [] for c in ids}
    for r in rows:
        out[r["call_id"]].append(r["value"])
    return out
