"""The CLI's surface: --help everywhere, a one-line message (exit 3, no traceback) when
Temporal or PostgreSQL is down, calls list/show/erase, and `temporal setup` on a namespace
that has none of the search attributes yet, one of the wrong type, or a server that refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from core.temporal import (
    SEARCH_ATTRIBUTES,
    SearchAttributesMissing,
    ensure_search_attributes,
    tcld_command,
)
from ops.cli import run
from ops.parser import build_parser
from ops.setup import register_search_attributes
from tests.api.conftest import ADMIN, ApiStack
from tests.ops.conftest import ops, recorded_call, wait_call
from workflows import search as sa

ROOT = Path(__file__).resolve().parent.parent.parent
COMMANDS = [
    [],
    ["calls"], ["calls", "list"], ["calls", "show"], ["calls", "erase"],
    ["recordings"], ["recordings", "failed"], ["recordings", "retry"],
    ["analysis"], ["analysis", "rerun"], ["webhooks"], ["webhooks", "list"],
    ["webhooks", "replay"],
    ["histories"], ["histories", "check"], ["histories", "export"],
    ["temporal"], ["temporal", "setup"], ["telephony"], ["telephony", "setup"],
    ["deploy"], ["deploy", "status"], ["deploy", "promote"], ["deploy", "wait-drained"],
]  # fmt: skip


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "ops")
async def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await run([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m ops") and "--json" in out


def test_every_command_is_dispatched() -> None:
    from ops.cli import COMMANDS as table

    parser = build_parser()
    groups = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    listed = {(g, c) for g, p in groups.items() for c in p._subparsers._group_actions[0].choices}
    assert listed == set(table)


def _cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_"))}
    dead = "127.0.0.1:9"  # discard port: nothing listens there
    base.update(
        DATABASE_URL=f"postgresql://ops:hunter2secret@{dead}/calls",
        MINIO_ENDPOINT=dead, MINIO_ACCESS_KEY="k", MINIO_SECRET_KEY="s",
        LIVEKIT_URL=f"http://{dead}", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s",
        API_TOKENS="ops-token-0123456789abcdef:ops", TEMPORAL_ADDRESS=dead,
        DEVSTACK_DIR=str(ROOT / "no-such-devstack"),
    )  # fmt: skip
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ops", *argv], cwd=ROOT, env=base, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


def test_unreachable_services_are_said_plainly() -> None:
    pg = _cli("calls", "list")
    assert pg.returncode == 3, pg.stderr
    assert "PostgreSQL is not reachable at 127.0.0.1:9/calls" in pg.stderr
    assert "Traceback" not in pg.stderr and "hunter2secret" not in pg.stderr
    tmp = _cli("--json", "recordings", "failed")
    assert tmp.returncode == 3, tmp.stderr
    assert "Temporal is not reachable at TEMPORAL_ADDRESS=127.0.0.1:9" in tmp.stderr
    assert "Traceback" not in tmp.stderr and tmp.stdout == ""


async def test_calls_list_show_erase(api_stack: ApiStack) -> None:
    call_id = await recorded_call(api_stack, "Listed Caller")
    listed = await ops(api_stack, "calls", "list", "--status", "active", "--json")
    assert listed.code == 0 and call_id in [c["call_id"] for c in listed.json]
    table = await ops(api_stack, "calls", "list", "--limit", "500")
    assert table.out.startswith("CALL_ID") and call_id in table.out

    refused = await ops(api_stack, "calls", "erase", call_id, "--yes", "--json")
    assert refused.code == 1 and refused.json["status"] == "refused", refused.out
    assert "still running" in refused.json["reason"]

    assert await api_stack.api.http("POST", f"/api/calls/{call_id}/end", token=ADMIN)
    await wait_call(api_stack, call_id, status="completed", recording_status="stored")
    shown = await ops(api_stack, "calls", "show", call_id, "--json")
    assert shown.code == 0 and shown.json["recording"]["sha256"], shown.out

    erased = await ops(api_stack, "calls", "erase", call_id, "--yes", "--by", "ops-test", "--json")
    assert erased.code == 0 and erased.json["status"] == "erased", erased.out
    assert erased.json["rows_deleted"] > 0 and erased.json["object_deleted"] is True
    gone = await ops(api_stack, "calls", "show", call_id)
    assert gone.code == 1 and "no call" in gone.err
    bad = await ops(api_stack, "calls", "show", "not a call id")
    assert bad.code == 2


async def test_temporal_setup_registers_what_is_missing_once(api_stack: ApiStack) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    await api_stack.raw_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(
                seconds=int(timedelta(days=1).total_seconds())
            ),
        )
    )
    settings = {"TEMPORAL_NAMESPACE": namespace}
    ns_client = await Client.connect(api_stack.temporal_address, namespace=namespace)
    first = await ops(api_stack, "temporal", "setup", "--json", **settings)
    assert first.code == 0, first.err
    assert sorted(first.json["added"]) == sorted(SEARCH_ATTRIBUTES)
    assert first.json["retention_schedule"] == "created"
    second = await ops(api_stack, "temporal", "setup", "--json", "--no-schedule", **settings)
    assert second.code == 0 and second.json["added"] == []
    assert sorted(second.json["present"]) == sorted(SEARCH_ATTRIBUTES)
    await ns_client.get_schedule_handle("call-retention").delete()


async def test_setup_reports_a_wrong_type_that_the_worker_refuses(api_stack: ApiStack) -> None:
    namespace = f"ops-{uuid.uuid4().hex[:8]}"
    await api_stack.raw_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(seconds=86400),
        )
    )
    await api_stack.raw_client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={"CallStatus": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
        )
    )
    r = await ops(api_stack, "temporal", "setup", "--json", "--no-schedule",
                  TEMPORAL_NAMESPACE=namespace)  # fmt: skip
    assert r.code == 1, r.out
    assert r.json["wrong_type"] == ["CallStatus"]
    assert sorted(r.json["added"]) == sorted(set(SEARCH_ATTRIBUTES) - {"CallStatus"})
    ns_client = await Client.connect(api_stack.temporal_address, namespace=namespace)
    with pytest.raises(SearchAttributesMissing, match="CallStatus=Keyword"):
        await ensure_search_attributes(ns_client)


class _RefusingOperator:
    """Temporal Cloud's answer to a client that manages search attributes (no Cloud here)."""

    async def list_search_attributes(self, req: Any) -> Any:
        raise RPCError("not allowed", RPCStatusCode.PERMISSION_DENIED, b"")


async def test_a_refusing_server_gets_the_commands_from_both() -> None:
    client: Any = SimpleNamespace(namespace="calls.a1b2c", operator_service=_RefusingOperator())
    result = await register_search_attributes(client, "127.0.0.1:7233")
    assert result.manual_command == tcld_command("calls.a1b2c")
    assert result.added == result.present == []
    with pytest.raises(SearchAttributesMissing) as err:
        await ensure_search_attributes(client)
    assert tcld_command("calls.a1b2c") in str(err.value) and "PERMISSION_DENIED" in str(err.value)


def test_setup_registers_the_keys_the_workflows_upsert() -> None:
    keys = [k for k in vars(sa).values() if isinstance(k, SearchAttributeKey)]
    upserted = {k.name: k.indexed_value_type.name.title() for k in keys}
    assert upserted == SEARCH_ATTRIBUTES


def test_cloud_gets_the_tcld_command() -> None:
    cmd = tcld_command("calls.a1b2c")
    assert cmd.startswith("tcld namespace search-attributes add --namespace calls.a1b2c")
    assert '--search-attribute "SilenceAlerts=Int"' in cmd
    assert '--search-attribute "CallStatus=Keyword"' in cmd


async def test_saved_views_are_valid_queries_and_documented(api_stack: ApiStack) -> None:
    from ops.views import SAVED_VIEWS, view_url

    readme = (ROOT / "README.md").read_text()
    for name, query in SAVED_VIEWS.items():
        await api_stack.client.count_workflows(query)  # raises on a query the server refuses
        assert f"`{query}`" in readme and name in readme, name
    url = view_url("http://localhost:8233", "default", SAVED_VIEWS["Failed recordings"])
    assert url.endswith("RecordingStatus%20%3D%20%27failed%27")


async def test_an_unknown_namespace_is_a_one_line_refusal(api_stack: ApiStack) -> None:
    r = await ops(api_stack, "recordings", "failed", TEMPORAL_NAMESPACE="no-such-namespace")
    assert r.code == 1 and r.err.startswith("error: Temporal refused: NOT_FOUND"), r.err
