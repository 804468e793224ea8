"""Every endpoint's bad input gets a 4xx JSON error naming the field and changes nothing; auth
(missing, invalid, wrong role); rate limit; the error shape; OpenAPI; ops endpoints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.models import new_call_id
from tests.api.conftest import ADMIN, OPS, SUPERVISOR, ApiStack, api_settings, run_api
from tests.fixtures.services import forget_client_limits

BAD = "NOT-A-CALL-ID"

# (method, path template, body, field the error must name)
BAD_INPUT: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/calls", b"{not json", "body"),
    ("POST", "/api/calls", [1, 2], "body"),
    ("POST", "/api/calls", {"customer_name": 42}, "customer_name"),
    ("POST", "/api/calls", {"customer_name": "x" * 65}, "customer_name"),
    ("POST", "/api/calls", {"customer_name": "<script>"}, "customer_name"),
    ("POST", "/api/calls", {"customer_name": "Ana", "call_id": "abc"}, "call_id"),
    ("POST", "/api/get-token", {"participantName": "y" * 100}, "participantName"),
    ("POST", "/api/get-token", {"roomName": "../../etc"}, "roomName"),
    ("POST", "/api/get-token", {"roomName": "r", "admin": True}, "admin"),
    ("GET", "/api/calls?status=bogus", None, "status"),
    ("GET", "/api/calls?limit=0", None, "limit"),
    ("GET", "/api/calls?limit=abc", None, "limit"),
    ("GET", "/api/calls?cursor=@@@", None, "cursor"),
    ("GET", "/api/calls?colour=red", None, "colour"),
    ("GET", "/api/calls?status=active&status=ended", None, "status"),
    ("GET", f"/api/calls/{BAD}", None, "call_id"),
    ("GET", "/api/calls/{live}/transcript?after=-1", None, "after"),
    ("GET", "/api/calls/{live}/transcript?after=abc", None, "after"),
    ("POST", "/api/calls/{live}/end", {"reason": "r" * 201}, "reason"),
    ("POST", "/api/calls/{live}/end", {"reason": 5}, "reason"),
    ("POST", "/api/calls/{live}/end", {"why": "x"}, "why"),
    ("POST", f"/api/calls/{BAD}/end", None, "call_id"),
    ("POST", "/api/calls/{live}/monitor", {"hidden": False}, "hidden"),
    ("POST", f"/api/calls/{BAD}/monitor", None, "call_id"),
    ("POST", "/api/calls/{live}/barge", {"x": 1}, "x"),
    ("POST", "/api/calls/{live}/whisper", {}, "text"),
    ("POST", "/api/calls/{live}/whisper", {"text": ""}, "text"),
    ("POST", "/api/calls/{live}/whisper", {"text": "   "}, "text"),
    ("POST", "/api/calls/{live}/whisper", {"text": "t" * 501}, "text"),
    ("POST", "/api/calls/{live}/whisper", {"text": ["a"]}, "text"),
    ("POST", "/api/calls/{live}/whisper", {"text": "ok", "to": "customer"}, "to"),
    ("POST", "/api/calls/{live}/whisper", None, "body"),
    ("POST", "/api/calls/{live}/whisper", {"text": "ok", "id": "a b"}, "id"),
    ("POST", "/api/calls/{live}/takeover", {"id": ""}, "id"),
    ("POST", "/api/calls/{live}/release", {"id": "x", "extra": 1}, "extra"),
    ("GET", f"/api/calls/{BAD}/recording", None, "call_id"),
    ("GET", f"/api/calls/{BAD}/report", None, "call_id"),
    ("POST", f"/api/recordings/{BAD}/retry", None, "call_id"),
    ("POST", "/api/recordings/{live}/retry", {"force": True}, "force"),
    ("DELETE", f"/api/calls/{BAD}", None, "call_id"),
    ("POST", "/codec/decode", {}, "payloads"),
    ("POST", "/codec/decode", {"payloads": "x"}, "payloads"),
    ("POST", "/codec/decode", {"payloads": [{"data": "***"}]}, "payloads.0.data"),
    (
        "POST",
        "/codec/decode",
        {"payloads": [{"metadata": {"encoding": "%%"}}]},
        "payloads.0.metadata.encoding",
    ),
    ("POST", "/codec/encode", {"payloads": [{"data": "", "meta": {}}]}, "payloads.0.meta"),
]


async def _footprint(db: asyncpg.Connection, live_call_id: str) -> tuple[int, int, int]:
    """What a bad request could have changed: calls started, the live call's log, erasures.
    (Other calls' pipelines may still append events in the background.)"""
    return (
        await db.fetchval("SELECT count(*) FROM calls"),
        await db.fetchval("SELECT count(*) FROM call_events WHERE call_id = $1", live_call_id),
        await db.fetchval("SELECT count(*) FROM erasures"),
    )


async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    api_stack: ApiStack, live_call_id: str, db: asyncpg.Connection
) -> None:
    before = await _footprint(db, live_call_id)
    workflows_before = await api_stack.count_workflows()
    for method, template, body, field in BAD_INPUT:
        path = template.replace("{live}", live_call_id)
        kwargs: dict[str, Any] = {"token": ADMIN}
        if isinstance(body, bytes):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json_body"] = body
        r = await api_stack.api.http(method, path, **kwargs)
        assert 400 <= r.status < 500, (method, path, r.status, r.body)
        assert r.error["field"] == field, (method, path, r.body)
        assert r.error["code"] and r.error["message"], r.body
    assert await _footprint(db, live_call_id) == before
    assert await api_stack.count_workflows() == workflows_before


async def test_unknown_but_valid_ids_are_404(api_stack: ApiStack) -> None:
    nobody = new_call_id()
    for method, path in [
        ("GET", f"/api/calls/{nobody}"),
        ("GET", f"/api/calls/{nobody}/transcript"),
        ("POST", f"/api/calls/{nobody}/end"),
        ("POST", f"/api/calls/{nobody}/monitor"),
        ("POST", f"/api/calls/{nobody}/barge"),
        ("GET", f"/api/calls/{nobody}/recording"),
        ("GET", f"/api/calls/{nobody}/report"),
        ("POST", f"/api/recordings/{nobody}/retry"),
        ("DELETE", f"/api/calls/{nobody}"),
    ]:
        r = await api_stack.api.http(method, path, token=ADMIN)
        assert r.status == 404, (method, path, r.body)
        assert r.error["field"] == "call_id"
    r = await api_stack.api.http(
        "POST", f"/api/calls/{nobody}/whisper", token=ADMIN, json_body={"text": "hi"}
    )
    assert r.status == 404
    r = await api_stack.api.http("GET", "/no/such/route")
    assert r.status == 404 and r.error["code"] == "not_found"
    r = await api_stack.api.http("PATCH", "/api/calls")
    assert r.status == 405 and r.error["code"] == "method_not_allowed"


# (method, path, roles that may)
SECURED = [
    ("GET", "/api/calls", {"supervisor", "ops", "admin"}),
    ("GET", "/api/calls/{live}", {"supervisor", "ops", "admin"}),
    ("GET", "/api/calls/{live}/transcript", {"supervisor", "ops", "admin"}),
    ("POST", "/api/calls/{live}/monitor", {"supervisor", "admin"}),
    ("POST", "/api/calls/{live}/barge", {"supervisor", "admin"}),
    ("POST", "/api/calls/{live}/whisper", {"supervisor", "admin"}),
    ("POST", "/api/calls/{live}/end", {"supervisor", "admin"}),
    ("GET", "/api/calls/{live}/recording", {"supervisor", "ops", "admin"}),
    ("GET", "/api/calls/{live}/report", {"supervisor", "ops", "admin"}),
    ("GET", "/api/calls/search", {"supervisor", "ops", "admin"}),
    ("POST", "/api/session/codec", {"supervisor", "admin"}),
    ("POST", "/api/recordings/{live}/retry", {"ops", "admin"}),
    ("DELETE", "/api/calls/{live}", {"admin"}),
    ("POST", "/codec/decode", {"supervisor", "admin"}),
    ("POST", "/codec/encode", {"admin"}),
]
TOKENS = {"supervisor": SUPERVISOR, "ops": OPS, "admin": ADMIN}


async def test_auth_missing_invalid_and_wrong_role(api_stack: ApiStack, live_call_id: str) -> None:
    for method, template, allowed in SECURED:
        path = template.replace("{live}", live_call_id)
        r = await api_stack.api.http(method, path)
        assert r.status == 401 and r.error["code"] == "unauthorized", (path, r.body)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
        r = await api_stack.api.http(method, path, token="not-a-configured-token-000")
        assert r.status == 401, (path, r.body)
        r = await api_stack.api.http(method, path, headers={"Authorization": f"Basic {ADMIN}"})
        assert r.status == 401, (path, r.body)
        for role in {"supervisor", "ops", "admin"} - allowed:
            # a refused role is refused before anything happens (these would act on the call)
            r = await api_stack.api.http(method, path, token=TOKENS[role], json_body={"text": "x"})
            assert r.status == 403 and r.error["code"] == "forbidden", (path, role, r.body)
    state = (await api_stack.api.http("GET", f"/api/calls/{live_call_id}", token=SUPERVISOR)).body
    assert state["live"] is True  # none of the refused requests ended or erased it


async def test_rate_limit_per_client_address(api_stack: ApiStack, pg_dsn: str, s3: Any) -> None:
    settings = api_settings(
        pg_dsn=pg_dsn,
        s3=s3,
        temporal_address=api_stack.temporal_address,
        livekit=api_stack.livekit,
        RATE_LIMIT_PER_MINUTE=2,
    )
    await forget_client_limits(pg_dsn, "127.0.0.1")  # the buckets are the session database's
    async with run_api(settings, wait_temporal=False) as limited:
        # invalid bodies: the limit is checked first and nothing is started
        statuses = [
            (await limited.http("POST", "/api/calls", json_body={"bad": 1})).status
            for _ in range(2)
        ]
        assert statuses == [422, 422]
        r = await limited.http("POST", "/api/get-token", json_body={})
        assert r.status == 429 and r.error["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 30
        # supervisors' endpoints are not customer-limited
        assert (await limited.http("GET", "/api/calls", token=SUPERVISOR)).status == 200


async def test_ops_endpoints(api_stack: ApiStack) -> None:
    r = await api_stack.api.http("GET", "/healthz")
    assert (r.status, r.body["status"]) == (200, "ok")
    r = await api_stack.api.http("GET", "/readyz")
    assert r.status == 200, r.body
    assert r.body["checks"] == {"temporal": "up", "postgres": "up", "storage": "up"}
    r = await api_stack.api.http("GET", "/metrics")
    assert r.status == 200 and "api_requests_total" in r.body
    assert 'route="/readyz"' in r.body


async def test_readyz_names_what_is_down(api_stack: ApiStack, pg_dsn: str, s3: Any) -> None:
    settings = api_settings(
        pg_dsn="postgresql://postgres:secret-pw@127.0.0.1:1/postgres",
        s3=s3,
        temporal_address=api_stack.temporal_address,
        livekit=api_stack.livekit,
        MINIO_ENDPOINT="127.0.0.1:1",
    )
    async with run_api(settings) as broken:
        r = await broken.http("GET", "/readyz")
        assert r.status == 503
        # up or down per part, nothing more: no address, port, error text or exception name
        assert r.body["checks"] == {"temporal": "up", "postgres": "down", "storage": "down"}
        assert "127.0.0.1" not in str(r.body) and "Error" not in str(r.body)
        assert "postgres" in r.body["error"]["message"] and "storage" in r.body["error"]["message"]
        assert "testing-secret" not in str(r.body) and "secret-pw" not in str(r.body)
        # a request that needs the database is a 503 naming no secret, not a 500
        r = await broken.http("GET", "/api/calls", token=SUPERVISOR)
        assert r.status == 503, r.body
        assert "secret-pw" not in str(r.body)


async def test_openapi_document(api_stack: ApiStack) -> None:
    # one OpenAPI document per process (sanic-ext): read it from an instance started now
    async with run_api(api_stack.settings) as api:
        r = await api.http("GET", "/docs/openapi.json")
        assert (await api.http("GET", "/docs")).status in (200, 302)
    assert r.status == 200
    paths = r.body["paths"]
    for path in (
        "/api/calls",
        "/api/get-token",
        "/api/calls/{call_id}",
        "/api/calls/{call_id}/transcript",
        "/api/calls/{call_id}/end",
        "/api/calls/{call_id}/monitor",
        "/api/calls/{call_id}/whisper",
        "/api/calls/{call_id}/barge",
        "/api/calls/{call_id}/recording",
        "/api/calls/{call_id}/report",
        "/api/calls/search",
        "/api/calls/{call_id}/analysis",
        "/api/analysis.csv",
        "/api/session/codec",
        "/api/recordings/{call_id}/retry",
        "/webhooks/livekit",
        "/internal/calls/{call_id}/interim",
        "/internal/calls/{call_id}/lines",
        "/codec/decode",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    body = r.body["components"]["schemas"]["CreateCallRequest"]
    assert body["additionalProperties"] is False
    # docs/api.md names every endpoint the served document has
    documented = documented_endpoints()
    served = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in paths.items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert not served - documented, f"missing from docs/api.md: {sorted(served - documented)}"


def documented_endpoints() -> set[tuple[str, str]]:
    """(method, path with every `{param}` as `{}`) for each endpoint docs/api.md names."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    return {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s`?]*)", text)
    }


@pytest.mark.parametrize(
    "origin,allowed", [("http://localhost:8233", True), ("https://evil.example", False)]
)
async def test_codec_cors_for_the_temporal_ui_only(
    api_stack: ApiStack, origin: str, allowed: bool
) -> None:
    r = await api_stack.api.http(
        "OPTIONS",
        "/codec/decode",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert r.status == 204
    assert (r.headers.get("Access-Control-Allow-Origin") == origin) is allowed
    r = await api_stack.api.http(
        "POST",
        "/codec/decode",
        token=SUPERVISOR,
        json_body={"payloads": []},
        headers={"Origin": origin},
    )
    assert r.status == 200 and r.body == {"payloads": []}
    assert (r.headers.get("Access-Control-Allow-Origin") == origin) is allowed


async def test_static_widget_and_dashboard(api_stack: ApiStack, tmp_path: Any) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html>widget</html>")
    (tmp_path / "dashboard.html").write_text("<html>dashboard</html>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    async with run_api(api_stack.settings, static_dir=tmp_path, wait_temporal=False) as api:
        r = await api.http("GET", "/")
        assert r.status == 200 and r.body == "<html>widget</html>"
        assert r.headers["Content-Type"].startswith("text/html")
        r = await api.http("GET", "/dashboard")
        assert r.status == 200 and r.body == "<html>dashboard</html>"
        r = await api.http("GET", "/static/assets/app.js")
        assert r.status == 200 and r.body == "console.log(1)"
        r = await api.http("GET", "/static/../../etc/passwd")
        assert r.status == 404
