"""The orchestration limit the benchmarks compare the product against: a bare workflow with a
trivial `issue_token` update and the call's own signals, each handler doing nothing but note
the line and the workflow's time, on its own task queue of the same Temporal server.

    python -m bench.bare --task-queue bench-bare     # its worker (the benches start it)

Same data converter (payload codec) as the product, so encryption costs the same on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

with workflow.unsafe.imports_passed_through():
    import core.models as m

WORKFLOW_TASK_POLLS = 16  # worker.WORKFLOW_TASK_POLLS: the baseline is tuned as the product

BARE_WORKFLOW = "BenchBareCall"
BARE_TASK_QUEUE = "bench-bare"


@dataclass
class BareResult:
    # line id -> the workflow's clock (epoch seconds) in the task that handled its signal
    seen_at: dict[str, float] = field(default_factory=dict)


@workflow.defn(name=BARE_WORKFLOW)
class BareCallWorkflow:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.ended = False

    @workflow.run
    async def run(self, call_id: str) -> BareResult:
        await workflow.wait_condition(lambda: self.ended)
        return BareResult(self.seen)

    @workflow.update(name=m.UPDATE_ISSUE_TOKEN)
    async def issue_token(self, req: m.IssueTokenRequest) -> m.TokenGrant:
        cid = workflow.info().workflow_id.removeprefix("bare-")
        return m.TokenGrant(cid, m.room_name_for(cid), "t", "", m.customer_identity(cid), "")

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT)
    def transcript(self, line: m.TranscriptLine) -> None:
        self.seen.setdefault(line.id, workflow.now().timestamp())

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT_BATCH)
    def transcript_batch(self, batch: m.TranscriptBatch) -> None:
        for line in batch.lines:
            self.transcript(line)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_LEFT)
    def participant_left(self, sig: m.ParticipantLeft) -> None:
        self.ended = True


async def serve(task_queue: str, workflow_task_polls: int, address: str = "") -> None:
    from temporalio.client import Client

    from core.settings import settings_or_exit
    from core.temporal import connect_temporal

    if address:  # the server alone (bench.temporal_signals): plain JSON, no settings needed
        client = await Client.connect(address)
    else:
        client = await connect_temporal(settings_or_exit())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    polls = PollerBehaviorSimpleMaximum(workflow_task_polls)
    async with Worker(client, task_queue=task_queue, workflows=[BareCallWorkflow],
                      workflow_task_poller_behavior=polls):  # fmt: skip
        print("bare worker started", flush=True)
        await stop.wait()


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", default=BARE_TASK_QUEUE)
    parser.add_argument("--workflow-task-polls", type=int, default=WORKFLOW_TASK_POLLS,
                        help="as the product's worker.py (default: the same)")  # fmt: skip
    parser.add_argument("--address", default="",
                        help="host:port of a Temporal server to use without settings or codec")  # fmt: skip
    a = parser.parse_args()
    asyncio.run(serve(a.task_queue, a.workflow_task_polls, a.address))
    exit_process(0)
