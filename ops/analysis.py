"""`ops analysis rerun` and `ops webhooks list|replay`: after the call, from the command line.

The same checks and the same workflow starts as `POST /api/calls/{id}/analysis/rerun` and
`POST /api/webhooks/{id}/replay` (`api.domain.analysis`, `workflows.analysis`), so the API and
the CLI refuse the same things and never run one analysis twice at once.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio.client import Client

from api.domain import analysis as domain
from workflows.analysis import AnalysisRunning, replay_webhook, rerun_analysis


async def rerun(
    pool: asyncpg.Pool, client: Client, call_id: str, *, task_queue: str, webhook_for_s: float
) -> dict[str, Any]:
    """`{"call_id", "outcome": started | refused, "detail", "run"}`."""
    try:
        run = await domain.next_run(pool, call_id)
        await rerun_analysis(client, call_id, run, task_queue=task_queue,
                             webhook_for_s=webhook_for_s)  # fmt: skip
    except domain.NoSuchCall:
        return {"call_id": call_id, "outcome": "refused", "detail": "no such call", "run": None}
    except domain.CallLive:
        return {"call_id": call_id, "outcome": "refused", "detail": "the call has not ended",
                "run": None}  # fmt: skip
    except AnalysisRunning:
        return {"call_id": call_id, "outcome": "refused", "detail": "being analysed now",
                "run": None}  # fmt: skip
    return {"call_id": call_id, "outcome": "started", "detail": "", "run": run}


async def replay(
    pool: asyncpg.Pool, client: Client, msg_id: str, *, task_queue: str, for_s: float
) -> dict[str, Any]:
    """`{"id", "call_id", "outcome": started | refused, "detail"}`."""
    call_id = await domain.message_call(pool, msg_id)
    if call_id is None:
        return {"id": msg_id, "call_id": None, "outcome": "refused", "detail": "no such message"}
    try:
        await replay_webhook(client, msg_id, task_queue=task_queue, for_s=for_s)
    except AnalysisRunning:
        return {"id": msg_id, "call_id": call_id, "outcome": "refused",
                "detail": "being delivered now"}  # fmt: skip
    return {"id": msg_id, "call_id": call_id, "outcome": "started", "detail": ""}
