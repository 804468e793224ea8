"""Property-based fuzz of the OpenAPI document (schemathesis): no input makes the API answer 5xx,
with a token (everything reachable) and without one (what an anonymous caller reaches, the
webhook and the agent's endpoint included).

Bounded and deterministic in the suite (fixed seed, a few examples per operation, a time
budget), against the real stack, so accepted inputs really start calls and query workflows.
A larger run: `FUZZ_EXAMPLES=200 FUZZ_BUDGET_S=900 uv run pytest tests/api/test_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.api.conftest import ADMIN, ApiStack, run_api

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
BUDGET_S = int(os.environ.get("FUZZ_BUDGET_S", "30"))
SEED = os.environ.get("FUZZ_SEED", "20241124")


@pytest.mark.parametrize("authenticated", [True, False], ids=["admin-token", "anonymous"])
async def test_schemathesis_finds_no_server_error(
    api_stack: ApiStack, tmp_path: Path, authenticated: bool
) -> None:
    # sanic-ext keeps one OpenAPI document per process, rebuilt by the app started last and
    # cleared when any app stops: fuzz an instance started for this test.
    async with run_api(api_stack.settings) as api:
        if authenticated:
            # The webhook and the agent's endpoint take their own signed tokens: with ours they
            # only prove the 401s, which test_webhooks/test_live assert precisely.
            extra = ["--header", f"Authorization: Bearer {ADMIN}"]
            extra += ["--exclude-path-regex", "^/(webhooks|internal)/"]
        else:
            extra = []
        await _fuzz(api.url, tmp_path, extra)


async def _fuzz(url: str, tmp_path: Path, extra: list[str]) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    proc = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"{url}/docs/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(EXAMPLES),
        "--max-time",
        str(BUDGET_S),
        "--seed",
        SEED,
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
        *extra,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), BUDGET_S + 120)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    # Every generated case passed ("Authentication failed" is only a warning when anonymous).
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 0, report[-3000:]
