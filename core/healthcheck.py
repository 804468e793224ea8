"""Container health checks for docker-compose (`python -m core.healthcheck api|worker|agent`).

Exit 0 when healthy, 1 otherwise (one line on stderr says why; no secrets):
- `api`: GET /healthz on API_PORT answers 200;
- `worker`: this container's worker polls TEMPORAL_TASK_QUEUE (a poller whose identity is
  `<pid>@<this hostname>`, the SDK's default identity);
- `agent`: the LiveKit Agents worker's own health endpoint (AGENT_HTTP_PORT, default 8081).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.request


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return bool(resp.status == 200)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return False


async def _worker_polls() -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from core.settings import load_settings
    from core.temporal import connect_temporal

    settings = load_settings()
    client = await connect_temporal(settings)
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.TEMPORAL_NAMESPACE,
            task_queue=TaskQueue(name=settings.TEMPORAL_TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    mine = f"@{socket.gethostname()}"
    if any(p.identity.endswith(mine) for p in resp.pollers):
        return True
    print(f"unhealthy: no poller from {mine} on {settings.TEMPORAL_TASK_QUEUE}", file=sys.stderr)
    return False


def main(argv: list[str]) -> int:
    what = argv[0] if argv else ""
    if what == "api":
        return (
            0 if _http_ok(f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/healthz") else 1
        )
    if what == "agent":
        return (
            0 if _http_ok(f"http://127.0.0.1:{os.environ.get('AGENT_HTTP_PORT', '8081')}/") else 1
        )
    if what == "worker":
        try:
            return 0 if asyncio.run(_worker_polls()) else 1
        except Exception as exc:  # any failure to ask is "unhealthy", said in one line
            print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    print("usage: python -m core.healthcheck api|worker|agent", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from core.temporal import exit_process

    exit_process(main(sys.argv[1:]))
