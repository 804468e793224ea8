"""The final lines' write-ahead spool (agent/lines.py): a line is on disk before it goes anywhere,
reaches the API in order (batched, retried through an outage), leaves the file once stored, and a
process killed by SIGKILL leaves its lines for the next job, which claims each file once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.api_client import AgentApi
from agent.bridge import CallBridge
from agent.config import AgentConfig, AgentEnv
from agent.lines import FinalLines, api_line, claim_orphans, send_orphans
from agent.worker import _resend_spool
from core.models import (
    LINE_TEXT_MAX,
    SIGNAL_SILENCE,
    SIGNAL_TRANSCRIPT,
    AgentMetrics,
    SilenceSignal,
    TranscriptLine,
    customer_identity,
    new_call_id,
)
from core.settings import load_settings
from devstack.services import free_port
from tests.agent.stand_in_api import serve

ROOT = Path(__file__).resolve().parents[2]


class FakeApi:
    """`POST /internal/calls/{call_id}/lines` as the agent sees it: stores by id, can be down."""

    def __init__(self) -> None:
        self.stored: dict[str, list[str]] = {}  # call id -> line ids, in the order stored
        self.posts: list[tuple[str, list[str], str]] = []  # (call id, ids, authorization)
        self.answer = 200  # or 503 (database down), 422, 410
        self.refuse: set[str] = set()  # ids answered 422 when posted alone or with others

    async def handle(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await request.json()
        ids = [line["id"] for line in body["lines"]]
        self.posts.append((call_id, ids, request.headers.get("Authorization", "")))
        if self.answer != 200:
            return web.json_response({"error": {"code": "x", "message": "x"}}, status=self.answer)
        if self.refuse & set(ids):
            return web.json_response({"error": {"code": "validation_error"}}, status=422)
        have = self.stored.setdefault(call_id, [])
        out = []
        for i in ids:
            out.append({"id": i, "seq": None if i in have else len(have) + 1})
            if i not in have:
                have.append(i)
        return web.json_response({"stored": out})


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[str, FakeApi]]:
    api = FakeApi()
    async with serve("/internal/calls/{call_id}/lines", api.handle) as url:
        yield url, api


def client(url: str, call_id: str) -> AgentApi:
    return AgentApi(url, lambda: f"token-for-{call_id}", call_id=call_id)


def spooled(directory: Path) -> dict[str, list[str]]:
    """File name -> line ids in it."""
    return {
        p.name: [json.loads(r)["line"]["id"] for r in p.read_text().splitlines() if r.strip()]
        for p in sorted(directory.glob("lines-*.jsonl"))
    }


def line(i: int, speaker: str = "customer") -> TranscriptLine:
    return TranscriptLine(id=f"l{i}", speaker=speaker, text=f"line {i} \ud83d")


async def test_a_line_is_on_disk_before_add_returns_and_leaves_once_stored(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    call_id = new_call_id()
    api.answer = 503  # the database is down: nothing is stored yet
    lines = FinalLines(tmp_path, client(url, call_id), backoff_initial_s=0.05, backoff_max_s=0.1)
    lines.add(line(1))
    (name,) = spooled(tmp_path)
    assert spooled(tmp_path) == {name: ["l1"]}  # written before anything was sent
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600  # customer words
    lines.add(line(2, "assistant"))
    lines.add(line(3))
    await asyncio.sleep(0.3)
    assert api.posts and not api.stored and lines.pending == 3
    assert spooled(tmp_path) == {name: ["l1", "l2", "l3"]}
    api.answer = 200  # back: everything once, in order, the backlog in one POST
    assert await lines.drain(5)
    assert api.stored == {call_id: ["l1", "l2", "l3"]}
    assert api.posts[-1] == (call_id, ["l1", "l2", "l3"], f"Bearer token-for-{call_id}")
    assert spooled(tmp_path) == {name: []}  # compacted
    lines.add(line(4))
    assert await lines.aclose(5)
    assert api.stored[call_id] == ["l1", "l2", "l3", "l4"]
    assert spooled(tmp_path) == {}  # a job that stored everything leaves no file


async def test_compaction_keeps_lines_added_while_a_post_was_in_flight(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    call_id = new_call_id()
    lines = FinalLines(tmp_path, client(url, call_id))
    lines.add(line(1))
    await asyncio.sleep(0)  # the POST of l1 starts
    lines.add(line(2))
    for _ in range(100):
        if api.stored.get(call_id) == ["l1"] and lines.pending <= 1:
            break
        await asyncio.sleep(0.01)
    assert list(spooled(tmp_path).values())[0] in (["l2"], [])  # never loses l2
    assert await lines.aclose(5)
    assert api.stored[call_id] == ["l1", "l2"]


async def test_a_line_the_api_refuses_for_good_does_not_hold_back_the_others(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    call_id = new_call_id()
    api.answer = 503
    lines = FinalLines(tmp_path, client(url, call_id), backoff_initial_s=0.05, backoff_max_s=0.1)
    for i in range(4):
        lines.add(line(i))
    api.refuse = {"l1"}
    api.answer = 200
    assert await lines.aclose(5)
    assert api.stored[call_id] == ["l0", "l2", "l3"] and lines.dropped == 1


async def test_the_bridge_writes_a_line_ahead_then_signals_it(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    call_id = new_call_id()
    seen: list[tuple[str, Any, dict[str, list[str]]]] = []

    class Sink:
        def send(self, name: str, payload: Any) -> None:
            seen.append((name, payload, spooled(tmp_path)))  # what was on disk at the signal

    lines = FinalLines(tmp_path, client(url, call_id))
    bridge = CallBridge(
        call_id=call_id, customer_identity=customer_identity(call_id), signals=Sink(), lines=lines
    )
    long = TranscriptLine(id="long", speaker="customer", text="x" * (LINE_TEXT_MAX + 5))
    bridge.send(SIGNAL_TRANSCRIPT, long)
    bridge.send(SIGNAL_SILENCE, SilenceSignal(id="s1", speaker="customer", duration_s=30))
    assert await bridge.aclose(5)
    (name, payload, on_disk), (other, _, _) = seen
    assert name == SIGNAL_TRANSCRIPT and list(on_disk.values()) == [["long"]]
    assert len(payload.text) == LINE_TEXT_MAX  # the workflow sees what is stored
    assert other == SIGNAL_SILENCE
    assert api.stored == {call_id: ["long"]}


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from agent.api_client import AgentApi
    from agent.lines import FinalLines
    from core.models import AgentMetrics, TranscriptLine

    async def main(directory, url, calls):
        spools = [FinalLines(directory, AgentApi(url, lambda: "t", call_id=c),
                             backoff_initial_s=0.05, backoff_max_s=0.1) for c in calls]
        for k in range(3):
            for c, spool in zip(calls, spools):
                metrics = AgentMetrics(id=f"m{k}", time_to_first_token_s=0.25) if k else None
                spool.add(TranscriptLine(id=f"{c}-{k}", speaker="assistant", text=f"said {k}",
                                         metrics=metrics))
        print("written", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    """
)


async def test_lines_of_a_sigkilled_process_are_claimed_once_and_sent(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    calls = [new_call_id(), new_call_id()]
    down = f"http://127.0.0.1:{free_port()}"  # the API is unreachable while the writer lives
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(tmp_path), down, *calls,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"written"
    # a live writer's files are not anyone else's to send
    assert claim_orphans(tmp_path) == []
    # and a live job of this process keeps its own file
    mine = FinalLines(tmp_path, client(url, new_call_id()))
    mine.add(line(9))
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    with open(next(tmp_path.glob(f"lines-{calls[0]}-*.jsonl")), "ab") as f:
        f.write(b'{"call_id": "torn')  # it died mid-write: a record without its end

    signalled: dict[str, list[TranscriptLine]] = {}

    async def signal_again(call_id: str, lines: list[TranscriptLine]) -> None:
        signalled[call_id] = lines

    # two jobs start at once: each file is claimed by one of them
    results = await asyncio.gather(
        send_orphans(tmp_path, lambda c: client(url, c), signal_again),
        send_orphans(tmp_path, lambda c: client(url, c), signal_again),
    )
    assert sum(results) == 6
    for c in calls:
        assert api.stored[c] == [f"{c}-0", f"{c}-1", f"{c}-2"]
        assert [x.id for x in signalled[c]] == [f"{c}-0", f"{c}-1", f"{c}-2"]
    assert sum(len(ids) for c, ids, _ in api.posts if c in calls) == 6  # nothing sent twice
    assert signalled[calls[1]][1].metrics == AgentMetrics(id="m1", time_to_first_token_s=0.25)
    assert [n for n in spooled(tmp_path)] == [mine.path.name]  # only the live job's file
    assert await send_orphans(tmp_path, lambda c: client(url, c)) == 0
    assert await mine.aclose(5)


async def test_an_orphan_the_api_cannot_take_yet_stays_for_the_next_job(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    url, api = fake_api
    call_id = new_call_id()
    api.answer = 503
    lines = FinalLines(tmp_path, client(url, call_id), backoff_initial_s=0.05)
    lines.add(line(1))
    assert not await lines.aclose(0.2)  # the job ends with the database down
    assert list(spooled(tmp_path).values()) == [["l1"]]
    assert await send_orphans(tmp_path, lambda c: client(url, c), timeout_s=0.3) == 0
    assert list(spooled(tmp_path).values()) == [["l1"]]  # still there, for the next job
    api.answer = 200
    assert await send_orphans(tmp_path, lambda c: client(url, c)) == 1
    assert api.stored[call_id] == ["l1"] and spooled(tmp_path) == {}
    assert not os.listdir(tmp_path)


async def test_an_erased_calls_lines_leave_the_agents_disk(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    """Erasure reaches the agent's spool too: the API answers 410 for an erased call, and the
    lines it would not store are dropped from the file, which goes with the job (or the next
    job that claims a dead one's file): no customer word of the call is left on disk."""
    url, api = fake_api
    live, dead = new_call_id(), new_call_id()
    api.answer = 503  # down while the calls end: both spools keep their lines
    lines = FinalLines(tmp_path, client(url, live), backoff_initial_s=0.05, backoff_max_s=0.1)
    lines.add(line(1))
    orphan = FinalLines(tmp_path, client(url, dead), backoff_initial_s=0.05)
    orphan.add(line(2))
    assert not await orphan.aclose(0.2)  # its job ended: the file waits for the next job
    assert sorted(sum(spooled(tmp_path).values(), [])) == ["l1", "l2"]
    api.answer = 410  # both calls were erased meanwhile
    assert await lines.aclose(5)
    assert await send_orphans(tmp_path, lambda c: client(url, c)) == 0
    assert lines.dropped == 1 and not api.stored
    assert not os.listdir(tmp_path), "no spool file (and no line) of an erased call is left"


def test_a_confidence_the_api_would_refuse_does_not_cost_the_line() -> None:
    for bad, sent in ((float("nan"), 1.0), (float("inf"), 1.0), (1.7, 1.0), (-0.2, 0.0)):
        line = TranscriptLine(id="l1", speaker="customer", text="hi", confidence=bad)
        assert api_line(line)["confidence"] == sent


async def test_a_new_job_stores_a_dead_jobs_lines_even_with_temporal_down(
    fake_api: tuple[str, FakeApi], tmp_path: Path
) -> None:
    """The worker's start-of-job resend: the lines' storage never waits on Temporal (their
    signals stay queued for the workflow, not the lines for the dashboard)."""
    url, api = fake_api
    call_id = new_call_id()
    api.answer = 503
    dead = FinalLines(tmp_path, client(url, call_id), backoff_initial_s=0.05)
    dead.add(line(1))
    assert not await dead.aclose(0.2)  # as a killed process leaves it: unlocked, unsent
    api.answer = 200
    settings = load_settings(
        _env_file=None,
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",  # nobody there
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="devsecret-devsecret-devsecret-0123456789",
        DATABASE_URL="postgresql://u:p@127.0.0.1:1/db",
        MINIO_ENDPOINT="127.0.0.1:1",
        MINIO_ACCESS_KEY="k",
        MINIO_SECRET_KEY="s",
        LIVEKIT_URL="http://127.0.0.1:1",
        API_TOKENS="t0123456789abcdef:admin",
    )
    env = AgentEnv(API_URL=url, AGENT_SPOOL_DIR=str(tmp_path), AGENT_FLUSH_TIMEOUT_S=1.0)
    await _resend_spool(AgentConfig(settings=settings, env=env), spool_dir=str(tmp_path))
    assert api.stored == {call_id: ["l1"]}
    ((_, _, authorization),) = [p for p in api.posts if p[1] == ["l1"]][-1:]
    assert authorization.startswith("Bearer ey")  # a LiveKit JWT for the call's room
    assert spooled(tmp_path) == {}
