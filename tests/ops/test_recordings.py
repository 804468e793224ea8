"""`ops recordings failed|retry` on the real stack: recordings whose download failed (the
emulator answers 404 for them) are found by their search attribute and, once the source is
back, replayed to `stored`, one by id and the rest with `--all-failed`."""

from __future__ import annotations

from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack
from tests.ops.conftest import ops, recorded_call, wait_call


async def _failed_calls(api_stack: ApiStack, n: int) -> list[str]:
    lk = api_stack.livekit
    ids = [await recorded_call(api_stack, f"Retry {i}") for i in range(n)]
    await lk.set_fault("recording_error", status=404, count=0)
    try:
        for call_id in ids:
            r = await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)
            assert r.status == 200, r.body
        for call_id in ids:
            await wait_call(api_stack, call_id, recording_status="failed")
    finally:
        await lk.clear_faults()
    return ids


async def test_retry_one_then_all_failed_brings_pipelines_to_stored(api_stack: ApiStack) -> None:
    first, *rest = await _failed_calls(api_stack, 3)

    listed = await ops(api_stack, "recordings", "failed", "--json")
    assert listed.code == 0, listed.err
    failed = {f["call_id"]: f for f in listed.json}
    assert {first, *rest} <= set(failed)
    assert "404" in failed[first]["reason"], failed[first]

    # the dashboard's list: ops may read it, supervisors may not
    r = await api_stack.api.http("GET", "/api/recordings?status=failed&limit=500", token=OPS)
    assert r.status == 200, r.body
    rows = {x["call_id"]: x for x in r.body["recordings"]}
    assert {first, *rest} <= set(rows) and "404" in rows[first]["recording_error"]
    r = await api_stack.api.http("GET", "/api/recordings?status=failed", token=SUPERVISOR)
    assert r.status == 403

    one = await ops(api_stack, "recordings", "retry", first, "--wait", "60", "--json")
    assert one.code == 0, (one.out, one.err)
    assert one.json["results"] == [
        {
            "call_id": first,
            "outcome": "stored",
            "detail": "",
            "run_id": one.json["results"][0]["run_id"],
        }
    ]
    assert "1/1" in one.err  # the progress bar
    await wait_call(api_stack, first, recording_status="stored")

    # Replayed and stored: no longer listed; a second retry is refused, not repeated.
    again = await ops(api_stack, "recordings", "retry", first, "--json")
    assert again.code == 1 and again.json["results"][0]["outcome"] == "refused", again.out
    listed = await ops(api_stack, "recordings", "failed", "--json")
    assert first not in {f["call_id"] for f in listed.json}
    r = await api_stack.api.http("GET", "/api/recordings?status=failed&limit=500", token=OPS)
    assert first not in {x["call_id"] for x in r.body["recordings"]}

    every = await ops(
        api_stack, "recordings", "retry", "--all-failed", "--since", "1h", "--wait", "60", "--json"
    )
    outcomes = {r["call_id"]: r["outcome"] for r in every.json["results"]}
    assert all(outcomes[c] == "stored" for c in rest), every.out
    assert every.json["summary"]["total"] == len(outcomes)
    for call_id in rest:
        await wait_call(api_stack, call_id, recording_status="stored")

    text = await ops(api_stack, "recordings", "retry", "--all-failed", first)
    assert text.code == 2 and "not both" in text.err


async def test_retry_benchmark_at_tiny_size(api_stack: ApiStack, pg_dsn: str) -> None:
    from bench.ops_retry import measure

    figures = await measure(
        api_stack.client,
        pg_dsn,
        api_stack.livekit.url,
        api_stack.settings.TEMPORAL_TASK_QUEUE,
        3,
        [2],
    )
    assert figures.n == 3 and figures.find_s > 0 and figures.retry_s[2] > 0
