"""Property-based fuzz of the OpenAPI document (schemathesis): no input makes the API answer 5xx.

Bounded: a few examples per operation and a time budget, against the real stack (so accepted
inputs really start calls and query workflows)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.api.conftest import ADMIN, ApiStack, run_api

BUDGET_S = 30


async def test_schemathesis_finds_no_server_error(api_stack: ApiStack, tmp_path: Path) -> None:
    # sanic-ext keeps one OpenAPI document per process, rebuilt by the app started last and
    # cleared when any app stops: fuzz an instance started for this test.
    async with run_api(api_stack.settings) as api:
        await _fuzz(api.url, tmp_path)


async def _fuzz(url: str, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    proc = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"{url}/docs/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "8",
        "--max-time",
        str(BUDGET_S),
        "--seed",
        "20241124",
        # One worker: CPython 3.11's ast module is not thread-safe, and hypothesis parses
        # lambdas with it ("AST constructor recursion depth mismatch" with 2 workers).
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        "--header",
        f"Authorization: Bearer {ADMIN}",
        # The webhook and the agent's endpoint take their own signed tokens: fuzzing them only
        # proves the 401s, which test_webhooks/test_live assert precisely.
        "--exclude-path-regex",
        "^/(webhooks|internal)/",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), BUDGET_S + 60)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.lower(), report[-3000:]
