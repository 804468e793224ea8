"""Search attributes are never encrypted: with PAYLOAD_KEYS set (the API then starts calls with
`customer_name_searchable=False`), no customer name goes into them; without keys it does. The
current-details line (as unencrypted) never holds a name or what was said."""

from __future__ import annotations

import asyncio
import base64
import os

from temporalio.api.sdk.v1 import WorkflowMetadata

from core import models as m
from core.settings import load_settings
from testkit.harness import CUSTOMER, Harness
from workflows import search as sa

BASE = dict(
    DATABASE_URL="postgresql://x@h/db", MINIO_ENDPOINT="h:9000", MINIO_ACCESS_KEY="a",
    MINIO_SECRET_KEY="b", LIVEKIT_URL="ws://h", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s",
    API_TOKENS="t0123456789abcdef:admin",
)  # fmt: skip


def test_the_config_follows_payload_keys() -> None:
    key = "k1:" + base64.b64encode(os.urandom(32)).decode()
    assert not m.CallConfig.from_settings(
        load_settings(**BASE, PAYLOAD_KEYS=key)
    ).customer_name_searchable
    assert m.CallConfig.from_settings(
        load_settings(**BASE, PAYLOAD_KEYS="")
    ).customer_name_searchable


async def test_with_payload_keys_no_customer_name_is_searchable(harness: Harness) -> None:
    handle, _ = await harness.start(customer_name_searchable=False)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.ROOM_NAME) and attrs.get(sa.CUSTOMER_NAME) is None
    assert CUSTOMER not in str(attrs)
    # Nor into the current-details line the Web UI shows (unencrypted too), nor what was said.
    await harness.agent_joins(handle)
    await harness.say(handle, "customer", "My name is Zebulon and I want a manager")
    details = ""
    for _ in range(100):  # until it shows the call under way
        meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        details = meta.current_details
        if "in_progress" in details:
            break
        await asyncio.sleep(0.1)
    assert "in_progress" in details and handle.id.removeprefix("call-") in details, details
    assert CUSTOMER not in details and "Zebulon" not in details and "manager" not in details
    # (ended by the harness the normal way: a termination mid-task stops the time skipping)


async def test_without_keys_the_customer_name_is_searchable(harness: Harness) -> None:
    handle, _ = await harness.start()
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.CUSTOMER_NAME) == CUSTOMER
